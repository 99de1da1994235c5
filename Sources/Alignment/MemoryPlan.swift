import Foundation
import LM
import Torch

/// What a training run will hold at its peak, worked out before step 1 (FIELD-LESSONS: "out-of-memory
/// discovered hours in"): the process as it stands (runtime, loaded weights and data, any frozen reference),
/// the trainable parameters' gradients, AdamW's state, and the activations autograd keeps for one
/// micro-batch. The run prints it, and refuses to start when it exceeds a limit, naming the biggest term.
public struct MemoryPlan: Sendable {
  public struct Term: Sendable {
    public let name: String
    public let bytes: Int
    /// What the figure is made of, for the printed plan.
    public let detail: String
  }

  public let terms: [Term]
  public var total: Int { terms.reduce(0) { $0 + $1.bytes } }
  /// The term that, cut, saves most.
  public var biggest: Term { terms.max { $0.bytes < $1.bytes }! }

  /// The plan of training `model` (its trainable parameters plus `extraTrainable` numbers of a head the
  /// method owns) on micro-batches of `sequences` sequences of `tokens` tokens each, in a process whose
  /// resident memory is now `resident` bytes (which already holds the weights). The plan is made before the
  /// data is read, so `tokens` is the most a sequence may hold (`--seq-len`): data shorter than that pads
  /// each micro-batch only to its longest sequence and needs less.
  ///
  /// The peak is reached at the start of a backward pass: weights, gradients, AdamW's m and v (plus the
  /// one temporary of their size its update makes, `v.sqrt()`), and every tensor the forward pass saved.
  public static func training(model: any CausalLM, extraTrainable: Int = 0, sequences: Int, tokens: Int, resident: Int)
    -> MemoryPlan
  {
    let elementBytes = model.dtype.elementSize
    let weights = model.parameterCount * elementBytes
    let trainable = model.trainableParameters().reduce(extraTrainable) { $0 + $1.tensor.count } * elementBytes
    let frozen = weights - trainable + extraTrainable * elementBytes
    let perToken = activationElementsPerToken(model.config, tokens: tokens)
    let activations = sequences * tokens * perToken * elementBytes
    return MemoryPlan(terms: [
      Term(name: "parameters", bytes: weights + extraTrainable * elementBytes,
           detail: "\(model.parameterCount + extraTrainable) × \(elementBytes) B"
             + (frozen > 0 ? ", \(format(frozen)) of it frozen" : "")),
      Term(name: "gradients", bytes: trainable, detail: "one per trained parameter"),
      Term(name: "optimizer state", bytes: 3 * trainable, detail: "AdamW m and v, and the update's temporary"),
      Term(name: "activations", bytes: activations,
           detail: "\(sequences) sequences × \(tokens) tokens × \(perToken) saved numbers per token"),
      Term(name: "runtime and data", bytes: Swift.max(0, resident - weights - extraTrainable * elementBytes),
           detail: "libtorch, tokenizer, examples, frozen copies: resident now, less the weights"),
    ])
  }

  /// Numbers autograd keeps per token of a micro-batch, counted from the model's forward pass (each layer's
  /// saved inputs of its matrix products, norms, attention scores and activation functions) and its output
  /// head (logits, their log-softmax, and their gradient at the start of the backward pass).
  static func activationElementsPerToken(_ c: ModelConfig, tokens: Int) -> Int {
    let d = c.hiddenSize, kv = c.kvHeads * c.headDim, ffn = c.intermediateSize
    let scores = 3 * c.heads * tokens  // q·kᵀ, masked, softmax
    let layer: Int
    switch c.family {
    case .gpt2:
      // ln_1 in/out, c_attn out (q,k,v), context and its contiguous copy, c_proj in, residual, ln_2 in/out;
      // c_fc out, GELU out (c_proj's input); residual.
      layer = 2 * d + 3 * d + 2 * d + d + d + 2 * d + 2 * ffn + d + scores
    case .llama, .qwen2:
      // RMSNorm in/out, q, k, v, their rotations, k and v repeated to every head, context and its copy, o_proj
      // in, residual, RMSNorm in/out; gate, up, SiLU(gate), their product (down_proj's input); residual.
      layer = 2 * d + d + 2 * kv + d + kv + 2 * d + 2 * d + d + d + 2 * d + 4 * ffn + d + scores
    }
    return c.layers * layer + 2 * d + 3 * c.vocabSize
  }

  /// Throws when the plan exceeds `limit` bytes; `source` says where the limit came from.
  public func check(limit: Int, source: String) throws {
    if total > limit { throw MemoryPlanError(plan: self, limit: limit, limitSource: source) }
  }

  /// The plan as lines for a terminal, biggest term first, then the total against `limit`.
  public func lines(limit: Int?) -> [String] {
    var out = ["memory plan (estimate of the peak, before step 1):"]
    for t in terms.sorted(by: { $0.bytes > $1.bytes }) {
      out.append("  \(t.name.padding(toLength: 17, withPad: " ", startingAt: 0)) \(Self.format(t.bytes).leftPadded(10))  \(t.detail)")
    }
    out.append("  \("total".padding(toLength: 17, withPad: " ", startingAt: 0)) \(Self.format(total).leftPadded(10))"
      + (limit.map { "  of \(Self.format($0)) allowed (--max-memory)" } ?? ""))
    return out
  }

  /// Bytes as MiB or GiB with three significant figures.
  public static func format(_ bytes: Int) -> String {
    let mib = Double(bytes) / 1_048_576
    return mib >= 1024 ? String(format: "%.2f GiB", mib / 1024) : String(format: mib >= 100 ? "%.0f MiB" : "%.1f MiB", mib)
  }

  /// A size as people write it: bytes, or a number with K, M, G or T (binary: 1G = 1024³ bytes; a trailing
  /// "B" or "iB" is allowed). Nil when the text is not a positive size.
  public static func parseSize(_ text: String) -> Int? {
    var s = text.trimmingCharacters(in: .whitespaces).uppercased()
    for suffix in ["IB", "B"] where s.hasSuffix(suffix) && s.count > suffix.count {
      s.removeLast(suffix.count)
      break
    }
    let scales: [Character: Double] = ["K": 1024, "M": 1_048_576, "G": 1_073_741_824, "T": 1_099_511_627_776]
    var scale = 1.0
    if let last = s.last, let f = scales[last] {
      scale = f
      s.removeLast()
    }
    guard let v = Double(s), v.isFinite, v > 0, v * scale < 9e18 else { return nil }
    return Int(v * scale)
  }
}

/// The plan does not fit under the limit; the message names the total, the limit and the biggest term.
public struct MemoryPlanError: Error, CustomStringConvertible {
  public let plan: MemoryPlan
  public let limit: Int
  public let limitSource: String
  public var description: String {
    let b = plan.biggest
    let advice: String
    switch b.name {
    case "activations": advice = "lower --batch-size (raise --grad-accum to keep the batch) or --seq-len"
    case "optimizer state", "gradients": advice = "train a LoRA adapter (--lora-r 16) instead of every weight"
    case "parameters": advice = "use a smaller model, or load it in bfloat16 (--dtype bfloat16)"
    default: advice = "that much is resident already (libtorch, the loaded files, the data), so raise --max-memory"
    }
    return "the memory plan needs \(MemoryPlan.format(plan.total)), more than \(MemoryPlan.format(limit)) (\(limitSource)); "
      + "its biggest term is \(b.name), \(MemoryPlan.format(b.bytes)) (\(b.detail)): \(advice). "
      + "Nothing was trained or written."
  }
}

/// This process's memory as the kernel reports it (Linux `/proc`); nil where it cannot be read.
public enum ProcessMemory {
  /// Resident set size now, in bytes.
  public static var resident: Int? { field("VmRSS:", in: "/proc/self/status") }
  /// Peak resident set size so far, in bytes.
  public static var peakResident: Int? { field("VmHWM:", in: "/proc/self/status") }
  /// Memory the machine can still give without swapping (`MemAvailable`), in bytes.
  public static var available: Int? { field("MemAvailable:", in: "/proc/meminfo") }

  static func field(_ key: String, in path: String) -> Int? {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
    for line in text.split(separator: "\n") where line.hasPrefix(key) {
      let parts = line.split(separator: " ", omittingEmptySubsequences: true)
      guard parts.count >= 2, let kib = Int(parts[1]) else { return nil }
      return kib * 1024
    }
    return nil
  }
}

extension String {
  fileprivate func leftPadded(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}
