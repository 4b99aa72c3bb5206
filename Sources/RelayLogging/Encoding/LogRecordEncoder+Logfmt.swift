//===----------------------------------------------------------------------===//
//
// This source file is part of the swift-relay open source project
//
// SPDX-License-Identifier: Apache-2.0
//
//===----------------------------------------------------------------------===//

import Logging

extension LogRecordEncoder {
    /// `ts=… level=… label=… msg="…" [metadata…] source=… file=… function=… line=N
    /// [error="…" error.type=…]` and `\n`.
    internal func writeLogfmtLine(
        _ record: borrowing LogRecordFields,
        _ inputs: EncodingInputs,
        plan: TruncationPlan,
        into cursor: inout ByteCursor,
        sizes: inout ComponentSizes
    ) {
        cursor.append("ts=")
        cursor.appendRFC3339(nanosecondsSinceEpoch: record.timestampNanoseconds)
        cursor.append(" level=")
        cursor.append(record.level.staticName)
        cursor.append(" label=")
        cursor.appendLogfmtValue(record.label)
        cursor.append(" msg=\"")
        self.writeMessage(record, style: .json, plan: plan, into: &cursor, sizes: &sizes)
        cursor.append(UInt8(ascii: "\""))
        if inputs.hasMetadata {
            self.writeMetadataEntries(record, inputs, style: .logfmt, plan: plan, into: &cursor, sizes: &sizes)
        }
        cursor.append(" source=")
        record.withSourceBytes { cursor.appendLogfmtValue(bytes: $0) }
        cursor.append(" file=")
        cursor.appendLogfmtValue(record.file)
        cursor.append(" function=")
        cursor.appendLogfmtValue(record.function)
        cursor.append(" line=")
        cursor.appendDecimal(record.line)
        if let errorType = inputs.errorType {
            cursor.append(" error=\"")
            self.writeErrorMessage(inputs, style: .json, plan: plan, into: &cursor, sizes: &sizes)
            cursor.append("\" error.type=")
            cursor.appendLogfmtValue(errorType)
        }
        cursor.append(UInt8(ascii: "\n"))
    }
}
