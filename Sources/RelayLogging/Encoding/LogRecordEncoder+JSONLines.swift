//===----------------------------------------------------------------------===//
//
// This source file is part of the swift-relay open source project
//
// SPDX-License-Identifier: Apache-2.0
//
//===----------------------------------------------------------------------===//

import Logging

extension LogRecordEncoder {
    /// `{"timestamp":…,"level":…,"label":…,"message":…[,"metadata":{…}],"source":…,"file":…,
    /// "function":…,"line":N[,"error":{"message":…,"type":…}]}` and `\n`.
    internal func writeJSONLine(
        _ record: borrowing LogRecordFields,
        _ inputs: EncodingInputs,
        plan: TruncationPlan,
        into cursor: inout ByteCursor,
        sizes: inout ComponentSizes
    ) {
        cursor.append("{\"timestamp\":\"")
        cursor.appendRFC3339(nanosecondsSinceEpoch: record.timestampNanoseconds)
        cursor.append("\",\"level\":\"")
        cursor.append(record.level.staticName)
        cursor.append("\",\"label\":\"")
        cursor.appendEscaped(record.label, style: .json)
        cursor.append("\",\"message\":\"")
        self.writeMessage(record, style: .json, plan: plan, into: &cursor, sizes: &sizes)
        cursor.append(UInt8(ascii: "\""))
        if inputs.hasMetadata {
            cursor.append(",\"metadata\":{")
            self.writeMetadataEntries(record, inputs, style: .json, plan: plan, into: &cursor, sizes: &sizes)
            cursor.append(UInt8(ascii: "}"))
        }
        cursor.append(",\"source\":\"")
        record.withSourceBytes { cursor.appendEscaped($0, style: .json) }
        cursor.append("\",\"file\":\"")
        cursor.appendEscaped(record.file, style: .json)
        cursor.append("\",\"function\":\"")
        cursor.appendEscaped(record.function, style: .json)
        cursor.append("\",\"line\":")
        cursor.appendDecimal(record.line)
        if let errorType = inputs.errorType {
            cursor.append(",\"error\":{\"message\":\"")
            self.writeErrorMessage(inputs, style: .json, plan: plan, into: &cursor, sizes: &sizes)
            cursor.append("\",\"type\":\"")
            cursor.appendEscaped(errorType, style: .json)
            cursor.append("\"}")
        }
        cursor.append("}\n")
    }
}
