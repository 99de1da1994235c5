import Foundation
import LM
import Torch

/// A tiny chat model for experiments' end-to-end tests: a byte-level tokenizer written under `directory`, a
/// random one-block Llama, the plain chat template.
func tinyChat(in directory: URL, maxPositions: Int = 256) throws -> ChatModel {
  try ByteVocabulary.write(to: directory.appendingPathComponent("tok"))
  let tokenizer = try BPETokenizer(directory: directory.appendingPathComponent("tok"))
  let model = Checkpoint.makeModel(ModelConfig(family: .llama, vocabSize: ByteVocabulary.size, hiddenSize: 16, layers: 1, heads: 2,
                                               maxPositions: maxPositions), generator: Generator(seed: 1))
  return ChatModel(model: model, tokenizer: tokenizer, template: .plain)
}
