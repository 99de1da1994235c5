import Foundation
import FuzzSupport
import Serve

/// A request body as `shatter serve` receives it, decoded both as a chat completion and as a completion;
/// a refusal must be an `APIError` (a 400 naming the field), never anything else.
func check(_ input: UnsafeRawBufferPointer) {
  let body = Data(input)
  do { _ = try RequestDecoder.chat(body) } catch { precondition(error is APIError, "chat: \(error)") }
  do { _ = try RequestDecoder.completion(body) } catch { precondition(error is APIError, "completions: \(error)") }
}

@main enum Harness { static func main() { fuzz(check) } }
