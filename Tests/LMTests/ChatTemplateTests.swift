import Foundation
import Testing
@testable import LM
import Torch

/// Renderings by Hugging Face transformers 4.40's `apply_chat_template` (scripts/make_chat_template_fixtures.py).
struct ChatTemplateCases: Decodable {
  struct Case: Decodable {
    let template: String
    let messages: [ChatMessage]
    let add_generation_prompt: Bool
    let rendered: String
  }
  let cases: [Case]
}

@Suite struct ChatTemplateTests {
  static let folder = Bundle.module.resourceURL!.appendingPathComponent("Fixtures/chat_templates")

  @Test func rendersWhatTransformersRenders() throws {
    let file = try JSONDecoder().decode(ChatTemplateCases.self, from: Data(contentsOf: Self.folder.appendingPathComponent("cases.json")))
    #expect(file.cases.count >= 16)
    for c in file.cases {
      let source = try String(contentsOf: Self.folder.appendingPathComponent(c.template), encoding: .utf8)
      let template = ChatTemplate(templateSource: source)
      #expect(template.render(c.messages, addGenerationPrompt: c.add_generation_prompt) == c.rendered, "\(c.template) \(c.messages)")
    }
  }

  @Test func smolLM2DefaultSystemIsRecognised() throws {
    let source = try String(contentsOf: Self.folder.appendingPathComponent("smollm2.jinja"), encoding: .utf8)
    #expect(ChatTemplate(templateSource: source) == .chatMLWithDefaultSystem("You are a helpful AI assistant named SmolLM, trained by Hugging Face"))
    // A template that takes the system text from the messages has no fixed default.
    let variable = "{% if messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>' }}{% endif %}"
    #expect(ChatTemplate(templateSource: variable) == .chatML)
  }
}

@Suite struct StreamingGenerationTests {
  static let tokenizerDir = Bundle.module.resourceURL!.appendingPathComponent("Fixtures/tokenizers/qwen2")

  static func tinyModel(vocab: Int = 504) -> any CausalLM {
    let config = ModelConfig(family: .qwen2, vocabSize: vocab, hiddenSize: 32, layers: 2, heads: 4, kvHeads: 2, maxPositions: 128)
    return Checkpoint.makeModel(config, generator: Generator(seed: 7))
  }

  @Test func onTokenSeesEveryTokenAndCanStopARow() {
    let model = Self.tinyModel()
    let options = SamplingOptions(maxNewTokens: 6)
    let plain = model.generate([[1, 2, 3], [4, 5]], options: options)
    var seen: [[Int]] = [[], []]
    let streamed = model.generate([[1, 2, 3], [4, 5]], options: options) { row, token in
      seen[row].append(token)
      return true
    }
    #expect(streamed == plain)
    #expect(seen == plain)
    let cut = model.generate([[1, 2, 3], [4, 5]], options: options) { row, _ in row != 0 }
    #expect(cut[0] == Array(plain[0].prefix(1)))
    #expect(cut[1] == plain[1])
  }

  /// Rows that join a running decode, leave it, and share it get the tokens they get alone.
  @Test func batchDecoderWithJoiningRowsMatchesGeneratingAlone() {
    let model = Self.tinyModel()
    let prompts = [[1, 2, 3, 4, 5], [9, 8], [20, 21, 22, 23, 24, 25, 26, 27], [30]]
    let steps = [6, 3, 5, 4]
    let alone = prompts.indices.map { model.generate([prompts[$0]], options: SamplingOptions(maxNewTokens: steps[$0]))[0] }
    let decoder = BatchDecoder(model: model)
    var rows: [Int] = []  // prompt index of each decoder row
    var out = [[Int]](repeating: [], count: prompts.count)
    func take(_ logits: Tensor, for indices: [Int]) {
      let next = logits.argmax(dim: -1).toArray(Int64.self).map { Int($0) }
      for (i, t) in zip(indices, next) { out[i].append(t) }
    }
    take(decoder.add([prompts[0], prompts[1]]), for: [0, 1])
    rows = [0, 1]
    var joined = false
    while !rows.isEmpty {
      if !joined && out[0].count == 2 {
        take(decoder.add([prompts[2], prompts[3]]), for: [2, 3])  // continuous batching: join mid-decode
        rows += [2, 3]
        joined = true
      } else {
        take(decoder.step(rows.map { out[$0].last! }), for: rows)
      }
      let kept = rows.indices.filter { out[rows[$0]].count < steps[rows[$0]] }
      decoder.keep(kept)
      rows = kept.map { rows[$0] }
    }
    #expect(out == alone)
  }

  @Test func prefixCachedPrefillsGiveTheLogitsOfWholeOnes() {
    let model = Self.tinyModel()
    let shared = Array(1...40)
    // Four prompts with a long shared beginning (CEL's candidates), one that extends an earlier one, one unrelated.
    let prompts = [shared + [50, 51], shared + [52], shared + [53, 54, 55], shared + [50, 51, 60, 61], [7, 8, 9], shared]
    let plain = BatchDecoder(model: model), cached = BatchDecoder(model: model)
    let store = PrefixCache(capacity: 4, minimumReuse: 8)
    cached.prefixCache = store
    var a = [plain.add(Array(prompts.prefix(3)))], b = [cached.add(Array(prompts.prefix(3)))]
    a.append(plain.add(Array(prompts.dropFirst(3))))
    b.append(cached.add(Array(prompts.dropFirst(3))))
    let x = Tensor.cat(a, dim: 0), y = Tensor.cat(b, dim: 0)
    #expect((x - y).abs().max().item() < 1e-4)
    // The second, third, fourth and last prompts reused a prefix (the last one all but its last token).
    #expect(store.hits == 4 && store.reusedPositions == 40 + 40 + 42 + 39)
    // Decoding on from either cache gives the same next logits, padding and all.
    var next = x.argmax(dim: -1).toArray(Int64.self).map { Int($0) }
    for _ in 0..<3 {
      let p = plain.step(next), q = cached.step(next)
      #expect((p - q).abs().max().item() < 1e-4)
      next = p.argmax(dim: -1).toArray(Int64.self).map { Int($0) }
    }
  }

  @Test func textStreamerPiecesConcatenateToTheText() throws {
    let tokenizer = try BPETokenizer(directory: Self.tokenizerDir)
    let text = "Hello wörld 😀, stop here: END and beyond"
    let ids = tokenizer.encode(text, addSpecialTokens: false)
    var s = TextStreamer(tokenizer: tokenizer)
    var pieces = ""
    for id in ids { pieces += s.push(id) }
    pieces += s.finish()
    #expect(pieces == tokenizer.decode(ids, skipSpecialTokens: true))
    var stopping = TextStreamer(tokenizer: tokenizer, stopStrings: ["END"])
    var cut = ""
    for id in ids where !stopping.stopped { cut += stopping.push(id) }
    #expect(stopping.stopped)
    #expect(cut == "Hello wörld 😀, stop here: ")
  }
}
