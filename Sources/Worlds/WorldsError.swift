import Foundation

/// A malformed configuration or request from outside the library; the message names the field or value
/// and what was expected (ARCHITECTURE.md: nothing user-reachable may crash the process).
public struct WorldsError: Error, CustomStringConvertible, LocalizedError, Equatable, Sendable {
  public let message: String
  public init(_ message: String) { self.message = message }
  public var description: String { message }
  public var errorDescription: String? { message }
}
