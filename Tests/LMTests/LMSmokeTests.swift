import Testing
@testable import LM
@Test func lmTargetBuilds() { #expect(String(describing: LMInfo.self) == "LMInfo") }
