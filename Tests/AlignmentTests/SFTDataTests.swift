import Foundation
import Testing
import Torch
@testable import Alignment
@testable import LM

func byteTokenizer() throws -> BPETokenizer {
  let dir = FileManager.default.temporaryDirectory.appendingPathComponent("shatter-bytes-\(UUID())")
  defer { try? FileManager.default.removeItem(at: dir) }
  try ByteVocabulary.write(to: dir)
  return try BPETokenizer(directory: dir)
}

func jsonl(_ lines: [String]) throws -> URL {
  let url = FileManager.default.temporaryDirectory.appendingPathComponent("shatter-data-\(UUID()).jsonl")
  try Data(lines.joined(separator: "\n").utf8).write(to: url)
  return url
}

@Test func completionOnlyLossMasksThePromptAndTrainsTheFinalEOSEvenWhenPadIsEOS() throws {
  let tok = try byteTokenizer()
  let eos = tok.eosTokenId!
  #expect(tok.padTokenId == eos)  // the trap other tools fall into: pad = EOS
  let url = try jsonl([#"{"prompt": "ab", "completion": "cd"}"#, #"{"prompt": "x", "completion": "y"}"#])
  let examples = try SFTData.load(url, tokenizer: tok, template: .plain, maxLength: 64)
  #expect(examples[0].tokens == [97, 98, 99, 100, eos])
  #expect(examples[0].targets == [false, false, true, true, true])
  let batch = SequenceBatch(examples, padId: tok.padTokenId!)
  // Row 1 is padded with EOS ids after its real EOS; only the real one is a target.
  #expect(batch.padded.tokens.toArray(Int.self) == [97, 98, 99, 100, eos, 120, 121, eos, eos, eos])
  #expect(batch.labelMask.toArray(Float.self) == [0, 1, 1, 1, 1, 1, 0, 0])
  #expect(batch.targetCount == 5)
}

@Test func sftLossIsTheMeanTokenCrossEntropyOverTargets() throws {
  let config = ModelConfig(family: .llama, vocabSize: 11, hiddenSize: 8, layers: 1, heads: 2, maxPositions: 16)
  let model = Checkpoint.makeModel(config, generator: Generator(seed: 1))
  let examples = [TokenSequence(tokens: [1, 2, 3, 4], targets: [false, false, true, true]),
                  TokenSequence(tokens: [5, 6, 7], targets: [false, true, true])]
  let batch = SequenceBatch(examples, padId: 0)
  let loss = TokenLoss.crossEntropy(ScoredBatch(examples, model: model, padId: 0).tokens, mask: batch.labelMask).loss.item()
  // The same number from cross-entropy on each sequence separately.
  var total = 0.0
  for e in examples {
    let logits = model(Tensor(e.tokens, shape: [1, e.tokens.count]))[0]
    for i in 1..<e.tokens.count where e.targets[i] {
      total += Tensor.crossEntropy(logits: logits.narrow(dim: 0, start: i - 1, length: 1), targets: Tensor([e.tokens[i]])).item()
    }
  }
  #expect(Swift.abs(loss - total / 4) < 1e-5)
}

@Test func chatDataTrainsOnlyTheLastAssistantMessage() throws {
  let tok = try byteTokenizer()
  let url = try jsonl([#"{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}"#])
  let e = try SFTData.load(url, tokenizer: tok, template: .plain, maxLength: 128)[0]
  let trained = zip(e.tokens, e.targets).filter(\.1).map(\.0)
  let text = tok.decode(trained, skipSpecialTokens: true)
  #expect(text.hasPrefix("yo"))
  #expect(!text.contains("hi"))
  #expect(trained.last == tok.eosTokenId)
}

@Test func badDataNamesTheFileLineAndProblem() throws {
  let tok = try byteTokenizer()
  let cases: [(String, String)] = [
    (#"{"prompt": "a", "completion": "b"}"# + "\nnot json", ":2: not valid JSON"),
    (#"{"prompt": "a"}"#, ":1: missing key 'completion'"),
    (#"{"prompt": "a", "completion": ""}"#, ":1: empty completion"),
    (#"{"prompt": 3, "completion": "b"}"#, ":1: key 'prompt' should be a string"),
    (#"{"foo": 1}"#, ":1: expected a 'text', 'prompt'/'completion' or 'messages' key"),
    (#"{"messages": [{"role": "user", "content": "x"}]}"#, ":1: the last message should be a non-empty assistant reply"),
    ("[1, 2]", ":1: expected a JSON object"),
  ]
  for (content, fragment) in cases {
    let url = try jsonl([content])
    do {
      _ = try SFTData.load(url, tokenizer: tok, template: .plain, maxLength: 64)
      Issue.record("no error for \(content)")
    } catch let e as DataError {
      #expect(e.message.hasPrefix(url.path), "\(e.message)")
      #expect(e.message.contains(fragment), "\(e.message)")
    }
  }
}

@Test func trainerLowersTheLossAndAccumulationEqualsOneLargeBatch() throws {
  let config = ModelConfig(family: .gpt2, vocabSize: 16, hiddenSize: 16, layers: 1, heads: 2, maxPositions: 16)
  let examples = (0..<8).map { i in TokenSequence(tokens: [1, 2 + i % 5, 3 + i % 7, 4, 5], targets: [false, false, true, true, true]) }
  func run(batch: Int, accumulation: Int, steps: Int) throws -> (TrainingSummary, any CausalLM) {
    let model = Checkpoint.makeModel(config, generator: Generator(seed: 3))
    var o = TrainerOptions()
    o.batchSize = batch
    o.accumulation = accumulation
    o.steps = steps
    o.learningRate = 1e-2
    o.schedule = .constant
    o.seed = 5
    return (try Trainer(model: model, method: SFTMethod(padId: 0), examples: examples, options: o).train(), model)
  }
  let (long, _) = try run(batch: 8, accumulation: 1, steps: 30)
  #expect(long.lossHistory.last! < long.lossHistory.first! * 0.5)
  // Same examples in the same order: 1×8 and 4×2 with accumulation give the same loss and gradient
  // (compared before AdamW, whose first step is ±lr·sign(g) and so amplifies rounding in tiny gradients).
  let (a, m1) = try run(batch: 8, accumulation: 1, steps: 1)
  let (b, m2) = try run(batch: 2, accumulation: 4, steps: 1)
  #expect(Swift.abs(a.lossHistory[0] - b.lossHistory[0]) < 1e-5)
  for ((name, x), (_, y)) in zip(m1.namedParameters(), m2.namedParameters()) {
    #expect(x.grad!.allClose(y.grad!, rtol: 1e-4, atol: 1e-7), "\(name)")
  }
}

@Test func llama3ChatDataHasExactlyOneBeginOfText() throws {
  let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("LMTests/Fixtures/tokenizers/llama3")
  let tok = try BPETokenizer(directory: dir)
  let bos = tok.bosTokenId!
  let url = try jsonl([#"{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}"#])
  let e = try SFTData.load(url, tokenizer: tok, template: tok.chatTemplate, maxLength: 256)[0]
  #expect(e.tokens.first == bos)
  #expect(e.tokens.filter { $0 == bos }.count == 1)
}
