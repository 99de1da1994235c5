import Testing
import Torch
@testable import NN

@Test func placeholder() { #expect(Tensor.zeros([2]).count == 2) }
