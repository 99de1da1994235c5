import Testing
@testable import Torch

@Test func additionBroadcasts() {
  let a = Tensor([1.0, 2.0, 3.0] as [Double])
  let b = a + 1
  #expect(b.toArray(Double.self) == [2, 3, 4])
  #expect((a * a).sum().item() == 14)
}
