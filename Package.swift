// swift-tools-version: 6.0
import PackageDescription
import Foundation

// libtorch comes from Debian's libtorch-dev by default; set LIBTORCH=/path/to/libtorch to build
// against another distribution (e.g. a CUDA build of libtorch 2.x) laid out as include/ and lib/.
let libtorch = Context.environment["LIBTORCH"]
let torchIncludes = libtorch.map { ["-I\($0)/include", "-I\($0)/include/torch/csrc/api/include"] }
  ?? ["-I/usr/include/torch/csrc/api/include"]
let torchLibDir = libtorch.map { "\($0)/lib" } ?? "/usr/lib/x86_64-linux-gnu"
// Where the binary looks for libtorch when it runs (default: where it was linked). scripts/device-check
// links here against a copy of the GPU machine's libtorch and points this at that machine's torch/lib.
let torchRunPaths = (Context.environment["LIBTORCH_RPATH"] ?? torchLibDir).split(separator: ":").map(String.init)

// c10d's Gloo backend is compiled in where its headers are (Debian's libgloo-dev, matching Debian's
// libtorch; PyTorch's wheels ship none); NCCL where NCCL_INCLUDE names the folder holding nccl.h (the
// nvidia-nccl wheel's include/, beside a CUDA libtorch).
let glooHeaders = libtorch.map { "\($0)/include/gloo/config.h" } ?? "/usr/include/gloo/config.h"
let ncclInclude = Context.environment["NCCL_INCLUDE"]
let distributedFlags = (FileManager.default.fileExists(atPath: glooHeaders) ? ["-DUSE_C10D_GLOO"] : [])
  + (ncclInclude.map { ["-DUSE_C10D_NCCL", "-I\($0)"] } ?? [])

let package = Package(
  name: "Shatter",
  platforms: [.macOS(.v14)],
  products: [
    .executable(name: "shatter", targets: ["shatter"]),
    .library(name: "Torch", targets: ["Torch"]),
    .library(name: "NN", targets: ["NN"]),
    .library(name: "LM", targets: ["LM"]),
    .library(name: "Alignment", targets: ["Alignment"]),
    .library(name: "Worlds", targets: ["Worlds"]),
    .library(name: "Agents", targets: ["Agents"]),
    .library(name: "Experiments", targets: ["Experiments"]),
    .library(name: "Serve", targets: ["Serve"]),
    .library(name: "RunConfig", targets: ["RunConfig"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
    .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.0.0"),
    .package(url: "https://github.com/swift-server/async-http-client", from: "1.21.0"),
    .package(url: "https://github.com/apple/swift-nio", from: "2.65.0"),
  ],
  // Targets by layer (ARCHITECTURE.md): each imports only the ones above it; tests follow their layer.
  targets: [
    .target(
      name: "CTorch",
      cxxSettings: [
        .unsafeFlags(torchIncludes + distributedFlags + ["-Wno-deprecated-declarations", "-Wno-unused-parameter"]),
      ],
      linkerSettings: [
        .unsafeFlags(["-L\(torchLibDir)"] + torchRunPaths.flatMap { ["-Xlinker", "-rpath", "-Xlinker", $0] }),
        .linkedLibrary("torch"),
        .linkedLibrary("torch_cpu"),
        .linkedLibrary("c10"),
      ]
    ),
    .target(name: "Torch", dependencies: ["CTorch"]),
    .target(name: "NN", dependencies: ["Torch"]),
    .target(name: "LM", dependencies: ["NN", "Torch"]),
    .target(name: "Alignment", dependencies: ["LM", "NN", "Torch"]),
    .target(name: "Worlds"),
    .target(
      name: "Agents",
      dependencies: ["Worlds", "LM", "Torch", .product(name: "AsyncHTTPClient", package: "async-http-client"),
                     .product(name: "NIOCore", package: "swift-nio")],
      resources: [.copy("Prompts")]
    ),
    .target(name: "Experiments", dependencies: ["Agents", "Worlds", "Alignment", "LM", "NN", "Torch"]),
    .target(
      name: "Serve",
      dependencies: ["LM", "Torch", .product(name: "Hummingbird", package: "hummingbird")]
    ),
    .target(name: "RunConfig", dependencies: [.product(name: "Yams", package: "Yams")]),
    .executableTarget(
      name: "shatter",
      dependencies: [
        "Torch", "NN", "LM", "Alignment", "Experiments", "Serve", "Agents", "Worlds", "RunConfig",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ]
    ),
    .testTarget(name: "TorchTests", dependencies: ["Torch"], resources: [.copy("Fixtures")]),
    .testTarget(name: "NNTests", dependencies: ["NN", "Torch"]),
    .testTarget(name: "LMTests", dependencies: ["LM", "NN", "Torch"], resources: [.copy("Fixtures")]),
    .testTarget(name: "AlignmentTests", dependencies: ["Alignment", "LM", "NN", "Torch"]),
    .testTarget(name: "WorldsTests", dependencies: ["Worlds"], resources: [.copy("Fixtures")]),
    .testTarget(name: "ExperimentsTests", dependencies: ["Experiments", "Agents", "Worlds", "Alignment", "LM", "Torch"],
                exclude: ["Fixtures"]),
    .testTarget(name: "ServeTests", dependencies: ["Serve", "LM", "Torch"]),
    .testTarget(name: "AgentsTests", dependencies: ["Agents", "Serve", "Worlds", "LM", "Torch"]),
    .testTarget(name: "CLITests", dependencies: ["shatter", "Torch"]),
  ],
  cxxLanguageStandard: .cxx17
)
