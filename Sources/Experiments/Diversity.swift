import Foundation

/// Diversity of a set of samples, as the IQLearn experiment (METHODS §5) measures it: Self-BLEU (each
/// sample's BLEU against all the others as references, averaged; lower is more diverse) and distinct-n
/// (distinct n-grams over all n-grams). BLEU is sacrebleu's sentence BLEU: its 13a tokenizer, n-grams to
/// 4, clipped counts, the closest reference length for the brevity penalty, 'exp' smoothing and the
/// effective order; fixtures written by the `sacrebleu` package check it (scripts/make_diversity_fixtures.py).
public enum Diversity {
  private static let rules: [(NSRegularExpression, String)] = [
    (#"([\{-\~\[-\` -\&\(-\+\:-\@\/])"#, " $1 "),  // punctuation and symbols
    (#"([^0-9])([\.,])"#, "$1 $2 "),  // period and comma unless after a digit
    (#"([\.,])([^0-9])"#, " $1 $2"),  // period and comma unless before a digit
    (#"([0-9])(-)"#, "$1 $2 "),  // a dash after a digit
  ].map { (try! NSRegularExpression(pattern: $0.0), $0.1) }

  /// mteval-v13a's tokenisation, as sacrebleu's default tokenizer.
  public static func tokenize13a(_ text: String) -> [String] {
    var line = text.replacingOccurrences(of: "<skipped>", with: "").replacingOccurrences(of: "-\n", with: "")
      .replacingOccurrences(of: "\n", with: " ")
    if line.contains("&") {
      line = line.replacingOccurrences(of: "&quot;", with: "\"").replacingOccurrences(of: "&amp;", with: "&")
        .replacingOccurrences(of: "&lt;", with: "<").replacingOccurrences(of: "&gt;", with: ">")
    }
    line = " \(line) "
    for (re, template) in rules {
      line = re.stringByReplacingMatches(in: line, range: NSRange(line.startIndex..., in: line), withTemplate: template)
    }
    return line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }).map(String.init)
  }

  static func ngrams(_ tokens: [String], _ n: Int) -> [String: Int] {
    guard tokens.count >= n else { return [:] }
    var out: [String: Int] = [:]
    for i in 0...(tokens.count - n) { out[tokens[i..<i + n].joined(separator: "\u{1}"), default: 0] += 1 }
    return out
  }

  /// sacrebleu's `sentence_bleu(hypothesis, references).score` (0…100).
  public static func sentenceBLEU(_ hypothesis: String, references: [String]) -> Double {
    let hyp = tokenize13a(hypothesis), refs = references.map(tokenize13a)
    var correct = [Int](repeating: 0, count: 4), total = correct
    for n in 1...4 {
      let h = ngrams(hyp, n)
      var most: [String: Int] = [:]
      for r in refs { for (g, c) in ngrams(r, n) { most[g] = max(most[g] ?? 0, c) } }
      total[n - 1] = max(0, hyp.count - n + 1)
      correct[n - 1] = h.reduce(0) { $0 + min($1.value, most[$1.key] ?? 0) }
    }
    let refLength = refs.map(\.count).min { (abs($0 - hyp.count), $0) < (abs($1 - hyp.count), $1) } ?? 0
    guard correct.contains(where: { $0 > 0 }) else { return 0 }
    let bp = hyp.count < refLength ? (hyp.isEmpty ? 0 : Foundation.exp(1 - Double(refLength) / Double(hyp.count))) : 1
    var precisions = [Double](repeating: 0, count: 4), smooth = 1.0, order = 4
    for n in 1...4 {
      guard total[n - 1] > 0 else { break }
      order = n
      if correct[n - 1] == 0 {
        smooth *= 2
        precisions[n - 1] = 100 / (smooth * Double(total[n - 1]))
      } else {
        precisions[n - 1] = 100 * Double(correct[n - 1]) / Double(total[n - 1])
      }
    }
    let logs = precisions.prefix(order).map { $0 > 0 ? Foundation.log($0) : -9_999_999_999 }
    return bp * Foundation.exp(logs.reduce(0, +) / Double(order))
  }

  /// The mean over samples of each one's sentence BLEU against all the others, in [0, 1].
  public static func selfBLEU(_ samples: [String]) -> Double {
    guard samples.count > 1 else { return 0 }
    let scores = samples.indices.map { i in
      sentenceBLEU(samples[i], references: samples.indices.filter { $0 != i }.map { samples[$0] })
    }
    return scores.reduce(0, +) / Double(scores.count) / 100
  }

  /// Distinct n-grams over all n-grams of the samples' 13a tokens (0 when there are none).
  public static func distinct(_ samples: [String], n: Int) -> Double {
    var seen = Set<String>(), count = 0
    for s in samples {
      for (g, c) in ngrams(tokenize13a(s), n) {
        seen.insert(g)
        count += c
      }
    }
    return count == 0 ? 0 : Double(seen.count) / Double(count)
  }
}
