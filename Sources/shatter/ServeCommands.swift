import ArgumentParser
import Foundation
import LM
import Serve
import Torch

/// Sampling flags shared by `chat` (and named as OpenAI names them).
struct ChatSamplingOptions: ParsableArguments {
  @Option(help: "Largest number of new tokens per reply.") var maxTokens = 256
  @Option(help: "Sampling temperature; 0 picks the most likely token (greedy).") var temperature = 0.0
  @Option(help: "Keep the smallest set of tokens whose probability reaches p (1: off).") var topP = 1.0
  @Option(help: "Keep only the k most likely tokens before sampling (0: off).") var topK = 0
  @Option(help: "Seed for sampling.") var seed: UInt64 = 0

  func validate() throws {
    guard maxTokens > 0 else { throw ValidationError("--max-tokens must be positive") }
    guard temperature >= 0 else { throw ValidationError("--temperature must be ≥ 0") }
    guard topP > 0, topP <= 1 else { throw ValidationError("--top-p must be in (0, 1]") }
    guard topK >= 0 else { throw ValidationError("--top-k must be ≥ 0") }
  }

  var sampling: SamplingOptions {
    SamplingOptions(maxNewTokens: maxTokens, temperature: temperature, topK: topK > 0 ? topK : nil, topP: topP < 1 ? topP : nil)
  }
}

func chatTemplate(of tokenizer: any TextTokenizer) -> ChatTemplate {
  (tokenizer as? BPETokenizer)?.chatTemplate ?? .plain
}

struct ChatCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "chat",
    abstract: "Chat with a model in the terminal, using the model's chat template.",
    discussion: """
      Replies stream as they are generated and the conversation is kept; type /reset to start over and \
      /exit (or end of input) to leave. With --message, sends one message, prints the reply and exits.
      """)

  @Option(help: "Checkpoint directory (config.json, model.safetensors, tokenizer.json with tokenizer_config.json).")
  var model: String
  @OptionGroup var adapter: AdapterOption
  @Option(help: "Where the model runs: cpu, cuda or cuda:N (a CUDA build of libtorch).") var device: Device = .cpu
  @Option(help: "A system message opening the conversation (else the template's default, if it has one).") var system: String?
  @Option(help: "Send this one message, print the reply and exit.") var message: String?
  @Flag(help: "With --message: print one JSON object {\"reply\",\"finish_reason\",\"prompt_tokens\",\"completion_tokens\",\"prompt\"}.")
  var json = false
  @OptionGroup var sampling: ChatSamplingOptions

  func validate() throws {
    if json && message == nil { throw ValidationError("--json needs --message (one-shot mode)") }
  }

  func run() throws {
    let loaded = try LoadedModel(model, adapter: adapter.adapter, device: device)
    let session = ChatSession(model: loaded.model, tokenizer: loaded.tokenizer, template: chatTemplate(of: loaded.tokenizer),
                              system: system, options: sampling.sampling, seed: sampling.seed)
    if let message {
      if json {
        let r = try reply(session, message, stream: false)
        printJSON(["reply": r.text, "finish_reason": r.finish.rawValue, "prompt_tokens": r.promptTokens,
                   "completion_tokens": r.completionTokens, "prompt": r.prompt])
      } else {
        _ = try reply(session, message, stream: true)
      }
      return
    }
    FileHandle.standardError.write(Data("chat with \(model) — /reset starts over, /exit leaves\n".utf8))
    while true {
      FileHandle.standardOutput.write(Data("> ".utf8))
      guard let line = readLine(strippingNewline: true) else { break }
      let text = line.trimmingCharacters(in: .whitespaces)
      if text.isEmpty { continue }
      if text == "/exit" || text == "/quit" { break }
      if text == "/reset" {
        session.reset()
        FileHandle.standardOutput.write(Data("(conversation cleared)\n".utf8))
        continue
      }
      do {
        _ = try reply(session, line, stream: true)
      } catch {
        FileHandle.standardError.write(Data("Error: \(error)\n".utf8))
      }
    }
  }

  func reply(_ session: ChatSession, _ message: String, stream: Bool) throws -> ChatSession.Reply {
    do {
      let r = try session.send(message) { piece in
        if stream { FileHandle.standardOutput.write(Data(piece.utf8)) }
      }
      if stream { FileHandle.standardOutput.write(Data("\n".utf8)) }
      return r
    } catch let e as APIError {
      throw UserError(e.message)
    }
  }
}

struct ServeCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "serve",
    abstract: "Serve a model over an OpenAI-compatible HTTP API.",
    discussion: """
      Endpoints: POST /v1/chat/completions, POST /v1/completions (both with "stream": true as server-sent \
      events), GET /v1/models, GET /health. Concurrent requests are decoded together (continuous batching \
      up to --max-batch rows) on a worker thread. Logs one line per request on stderr.
      """)

  @Option(help: "Checkpoint directory (config.json, model.safetensors, tokenizer.json), .gguf file or PEFT adapter directory.")
  var model: String
  @OptionGroup var adapter: AdapterOption
  @Option(help: "Where the model runs: cpu, cuda or cuda:N (a CUDA build of libtorch).") var device: Device = .cpu
  @Option(help: "Address to listen on (loopback by default).") var host = "127.0.0.1"
  @Option(help: "Port to listen on (0: any free port, printed on stderr).") var port = 8000
  @Option(help: "Require 'Authorization: Bearer KEY' on /v1/*.") var apiKey: String?
  @Option(help: "The model id in /v1/models and responses (default: the directory's name).") var modelName: String?
  @Option(help: "Most requests decoded together.") var maxBatch = 8
  @Option(help: "Largest request body in bytes (larger: 413).") var maxBody = 1 << 20
  @Option(help: "max_tokens when a request gives none.") var defaultMaxTokens = 256
  @Option(help: "Seconds a request body may take to arrive (slower: 408, and the connection's input is closed).")
  var bodyTimeout = 15.0
  @Option(help: "Seconds a connection may stay silent, between requests or mid-request, before it is closed.")
  var idleTimeout = 30.0

  func validate() throws {
    guard (0...65535).contains(port) else { throw ValidationError("--port must be in 0…65535") }
    guard maxBatch >= 1 else { throw ValidationError("--max-batch must be ≥ 1") }
    guard maxBody >= 1 else { throw ValidationError("--max-body must be ≥ 1") }
    guard defaultMaxTokens >= 1 else { throw ValidationError("--default-max-tokens must be ≥ 1") }
    guard bodyTimeout > 0 else { throw ValidationError("--body-timeout must be positive") }
    guard idleTimeout > 0 else { throw ValidationError("--idle-timeout must be positive") }
  }

  func run() throws {
    let loaded = try LoadedModel(model, adapter: adapter.adapter, device: device)
    var options = ServerOptions()
    options.host = host
    options.port = port
    options.apiKey = apiKey
    options.modelName = modelName ?? URL(fileURLWithPath: model).standardizedFileURL.lastPathComponent
    options.maxBodyBytes = maxBody
    options.defaultMaxTokens = defaultMaxTokens
    options.bodyTimeout = bodyTimeout
    options.idleTimeout = idleTimeout
    let engine = GenerationEngine(model: loaded.model, tokenizer: loaded.tokenizer,
                                  stopTokens: completionStopTokens(model: loaded.model, tokenizer: loaded.tokenizer), maxBatch: maxBatch)
    let server = OpenAIServer(engine: engine, chatTemplate: chatTemplate(of: loaded.tokenizer), options: options)
    let name = options.modelName, context = engine.contextLength, host = self.host
    do {
      try blocking {
        try await server.run { port in
          FileHandle.standardError.write(Data("shatter serve: listening on http://\(host):\(port) (model \(name), context \(context))\n".utf8))
        }
      }
    } catch {
      throw UserError("serve: \(error)")
    }
  }
}

