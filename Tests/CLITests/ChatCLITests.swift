import Foundation
import Testing

/// `shatter chat` one-shot on the real model: SmolLM2's template (its default system turn included) is
/// applied and the model answers the question.
@Test func chatMessageAnswersWithTheChatTemplateApplied() throws {
  try requireRealModel()
  let r = try shatter(["chat", "--model", realModel.path, "--message", "What is 2+2?", "--max-tokens", "48", "--json"])
  #expect(r.status == 0, "\(r.stderr)")
  let prompt = r.json["prompt"] as? String ?? ""
  #expect(prompt == "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    + "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n")
  let reply = r.json["reply"] as? String ?? ""
  #expect(reply.contains("4"), "replied \(reply.debugDescription)")
  #expect(r.json["finish_reason"] as? String == "stop")
}

@Test func chatJSONNeedsAMessage() throws {
  let r = try shatter(["chat", "--model", "/nonexistent", "--json"])
  #expect(r.status != 0)
  #expect(r.stderr.contains("--json needs --message"))
}

@Test func serveRefusesABadPortAndAMissingModel() throws {
  let port = try shatter(["serve", "--model", "/nonexistent", "--port", "70000"])
  #expect(port.status != 0 && port.stderr.contains("--port"))
  let missing = try shatter(["serve", "--model", "/nonexistent", "--port", "0"])
  #expect(missing.status != 0 && missing.stderr.contains("/nonexistent"))
}
