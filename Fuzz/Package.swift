// swift-tools-version: 6.0
// libFuzzer harnesses for every parser that reads user-supplied bytes, a package of their own so that
// `swift build` at the root never builds them: they only link with `-sanitize=fuzzer`. scripts/fuzz builds
// them with
//   swift build --package-path Fuzz -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library -Xswiftc -use-ld=lld
// and runs each on a copy of its seed corpus in Corpus/<target>/ (README.md).
import PackageDescription

// A path dependency is named by its directory, which is whatever the checkout is called.
let shatter = Context.packageDirectory.split(separator: "/").dropLast().last.map(String.init) ?? "main"

func harness(_ name: String, _ products: [String]) -> Target {
  .executableTarget(name: name, dependencies: ["FuzzSupport"] + products.map { .product(name: $0, package: shatter) },
                    path: "Sources/\(name)")
}

let package = Package(
  name: "ShatterFuzz",
  platforms: [.macOS(.v14)],
  dependencies: [.package(path: "..")],
  targets: [
    .target(name: "CLibFuzzer"),
    .target(name: "FuzzSupport", dependencies: ["CLibFuzzer"]),
    harness("fuzz-safetensors", ["Torch"]),
    harness("fuzz-gguf", ["LM", "Torch"]),
    harness("fuzz-tokenizer", ["LM"]),
    harness("fuzz-config", ["LM"]),
    harness("fuzz-datasets", ["Alignment", "LM"]),
    harness("fuzz-run-config", ["RunConfig"]),
    harness("fuzz-requests", ["Serve"]),
  ]
)
