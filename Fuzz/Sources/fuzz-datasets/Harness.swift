import Alignment
import Foundation
import FuzzSupport
import LM

/// JSONL data from memory through every loader, whatever shape its lines have: SFT (`text`,
/// `prompt`/`completion`, `messages`), pairs, multi-view responses, K-way choices, prompts and KTO labels.
let tokenizer = CharTokenizer(alphabet: Array("abcdefghijklmnopqrstuvwxyz0123456789 .,:?!<>|+-=\n"),
                              specials: ["<pad>", "<bos>", "<eos>", "<unk>", "<|im_start|>", "<|im_end|>"])
let templates: [ChatTemplate] = [.plain, .chatML, .llama3, .chatMLWithDefaultSystem("Be brief.")]

func check(_ input: UnsafeRawBufferPointer) {
  let data = Data(input)
  guard let file = try? JSONLFile(data: data, path: "fuzz.jsonl") else { return }
  // The sequence length comes from the input too, so truncation is exercised at every length.
  let maxLength = 1 + Int(data.first ?? 0) % 48
  for template in templates {
    _ = try? SFTData.load(file, tokenizer: tokenizer, template: template, maxLength: maxLength)
    _ = try? PreferenceData.loadPrompts(file, tokenizer: tokenizer, template: template, maxLength: maxLength)
  }
  _ = try? PreferenceData.loadPairs(file, tokenizer: tokenizer, maxLength: maxLength)
  _ = try? PreferenceData.loadMultiView(file, tokenizer: tokenizer, maxLength: maxLength)
  _ = try? PreferenceData.loadChoices(file, tokenizer: tokenizer, maxLength: maxLength)
  _ = try? KTOData.load(file, tokenizer: tokenizer, maxLength: maxLength)
}

@main enum Harness { static func main() { fuzz(check) } }
