import Foundation
import LM

/// Server-sent events as OpenAI streams them: one `data: <json>` event per chunk, a blank line after each,
/// and `data: [DONE]` at the end.
public enum SSE {
  public static func event(_ object: [String: Any]) -> String { "data: \(JSONText.encode(object))\n\n" }
  public static let done = "data: [DONE]\n\n"

  /// The `data:` payloads of a stream (for tests and clients): events are separated by blank lines.
  public static func payloads(_ stream: String) -> [String] {
    stream.components(separatedBy: "\n\n").compactMap { event in
      let lines = event.split(separator: "\n", omittingEmptySubsequences: true)
      let data = lines.filter { $0.hasPrefix("data:") }.map { line -> String in
        let rest = line.dropFirst(5)
        return String(rest.hasPrefix(" ") ? rest.dropFirst() : rest)
      }
      return data.isEmpty ? nil : data.joined(separator: "\n")
    }
  }
}

/// JSON text of response objects (NSNull for JSON null), keys sorted so output is stable.
enum JSONText {
  static func encode(_ object: [String: Any]) -> String {
    guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]) else {
      preconditionFailure("response object is not JSON-serialisable: \(object)")
    }
    return String(decoding: data, as: UTF8.self)
  }
}

/// The response bodies of the OpenAI API this server speaks.
public enum OpenAIShapes {
  public static func usage(prompt: Int, completion: Int) -> [String: Any] {
    ["prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion]
  }

  public static func chatCompletion(id: String, created: Int, model: String, text: String, finish: FinishReason,
                                    promptTokens: Int, completionTokens: Int) -> [String: Any] {
    [
      "id": id, "object": "chat.completion", "created": created, "model": model,
      "choices": [[
        "index": 0, "message": ["role": "assistant", "content": text] as [String: Any], "logprobs": NSNull(),
        "finish_reason": finish.rawValue,
      ] as [String: Any]],
      "usage": usage(prompt: promptTokens, completion: completionTokens),
    ]
  }

  /// One `chat.completion.chunk`: `delta` is `{"role": "assistant", "content": ""}` first, then
  /// `{"content": piece}`, then `{}` with the finish reason. `usage` is null except on the usage chunk.
  public static func chatChunk(id: String, created: Int, model: String, delta: [String: Any]?, finish: FinishReason?,
                               usage: [String: Any]? = nil) -> [String: Any] {
    var choices: [[String: Any]] = []
    if let delta {
      choices = [["index": 0, "delta": delta, "logprobs": NSNull(), "finish_reason": finish?.rawValue ?? NSNull()]]
    }
    return ["id": id, "object": "chat.completion.chunk", "created": created, "model": model, "choices": choices,
            "usage": usage ?? NSNull()]
  }

  public static func completion(id: String, created: Int, model: String, text: String, finish: FinishReason?,
                                usage: [String: Any]?) -> [String: Any] {
    var out: [String: Any] = [
      "id": id, "object": "text_completion", "created": created, "model": model,
      "choices": [["index": 0, "text": text, "logprobs": NSNull(), "finish_reason": finish?.rawValue ?? NSNull()] as [String: Any]],
    ]
    out["usage"] = usage ?? NSNull()
    return out
  }

  public static func models(_ ids: [String], created: Int) -> [String: Any] {
    ["object": "list", "data": ids.map { ["id": $0, "object": "model", "created": created, "owned_by": "shatter"] as [String: Any] }]
  }
}
