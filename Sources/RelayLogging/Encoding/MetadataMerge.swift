//===----------------------------------------------------------------------===//
//
// This source file is part of the swift-relay open source project
//
// SPDX-License-Identifier: Apache-2.0
//
//===----------------------------------------------------------------------===//

package import Logging

/// swift-log's metadata merge order (see `StreamLogHandler`): the handler's metadata is the base, the
/// metadata provider's entries override it, and the per-call entries override both.
///
/// The record encoders apply this order while encoding, without building the merged dictionary:
/// they write the handler's entries (minus the keys a later layer overrides), then the provider's
/// (minus the keys the call overrides), then the call's: the handler's sorted by key, the others sorted
/// or in their dictionaries' iteration order (see ``LogRecordEncoder/sortsMetadataKeys``).
package enum MetadataMerge {
    /// The merged metadata as a dictionary (allocates; for slow paths and tests).
    ///
    /// - Parameters:
    ///   - handler: The handler's metadata.
    ///   - provider: The metadata provider's metadata.
    ///   - call: The per-call metadata.
    /// - Returns: The effective metadata of the record.
    package static func merged(
        handler: Logger.Metadata,
        provider: Logger.Metadata?,
        call: Logger.Metadata?
    ) -> Logger.Metadata {
        var result = handler
        if let provider, !provider.isEmpty {
            result.merge(provider, uniquingKeysWith: { _, provided in provided })
        }
        if let call, !call.isEmpty {
            result.merge(call, uniquingKeysWith: { _, explicit in explicit })
        }
        return result
    }

    /// Whether a handler key is overridden by the provider or the call.
    ///
    /// - Parameters:
    ///   - key: A key of the handler's metadata.
    ///   - provider: The metadata provider's metadata.
    ///   - call: The per-call metadata.
    /// - Returns: `true` when a later layer has the same key.
    package static func isHandlerKeyOverridden(
        _ key: String,
        provider: Logger.Metadata?,
        call: Logger.Metadata?
    ) -> Bool {
        (provider?[key] != nil) || (call?[key] != nil)
    }

    /// Whether any key of `layer` is also a key of `lower` (so `lower` has an overridden entry).
    ///
    /// Costs one hash lookup per key of `layer`; allocation-free.
    ///
    /// - Parameters:
    ///   - layer: The higher-precedence metadata.
    ///   - lower: The lower-precedence metadata.
    /// - Returns: `true` on any collision.
    package static func overridesAny(_ layer: Logger.Metadata?, in lower: Logger.Metadata) -> Bool {
        guard let layer, !layer.isEmpty, !lower.isEmpty else { return false }
        if layer.count <= lower.count {
            for key in layer.keys where lower[key] != nil { return true }
        } else {
            for key in lower.keys where layer[key] != nil { return true }
        }
        return false
    }
}
