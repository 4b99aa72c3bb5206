//===----------------------------------------------------------------------===//
//
// This source file is part of the swift-relay open source project
//
// SPDX-License-Identifier: Apache-2.0
//
//===----------------------------------------------------------------------===//

import Logging

extension LogRecordEncoder {
    /// `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD-ID params… source="…" file="…"
    /// function="…" line="N" [error="…" error.type="…"]] MSG`, plus `\n` unless octet counting
    /// frames it (the length prefix is written by the caller).
    ///
    /// The structured data is never NIL (source, file, function and line are always present). The
    /// `SP MSG` part is left out when the message is empty. `MSG` is written as `MSG-ANY` without a
    /// BOM.
    internal func writeSyslogMessage(
        _ record: borrowing LogRecordFields,
        _ inputs: EncodingInputs,
        options: RFC5424Options,
        plan: TruncationPlan,
        into cursor: inout ByteCursor,
        sizes: inout ComponentSizes
    ) {
        let escapeControls = !options.octetCounting
        let valueStyle = EscapeStyle.structuredDataValue(escapeControls: escapeControls)
        cursor.append(UInt8(ascii: "<"))
        cursor.appendDecimal(UInt64(options.facility.rawValue) * 8 + UInt64(record.level.syslogSeverity))
        cursor.append(">1 ")
        cursor.appendRFC3339(nanosecondsSinceEpoch: record.timestampNanoseconds)
        options.renderedHeader.withUnsafeBytes { cursor.append(contentsOf: $0) }
        if inputs.hasMetadata {
            self.writeMetadataEntries(
                record,
                inputs,
                style: .structuredData(escapeControls: escapeControls),
                plan: plan,
                into: &cursor,
                sizes: &sizes
            )
        }
        cursor.append(" source=\"")
        record.withSourceBytes { cursor.appendEscaped($0, style: valueStyle) }
        cursor.append("\" file=\"")
        cursor.appendEscaped(record.file, style: valueStyle)
        cursor.append("\" function=\"")
        cursor.appendEscaped(record.function, style: valueStyle)
        cursor.append("\" line=\"")
        cursor.appendDecimal(record.line)
        cursor.append(UInt8(ascii: "\""))
        if let errorType = inputs.errorType {
            cursor.append(" error=\"")
            self.writeErrorMessage(inputs, style: valueStyle, plan: plan, into: &cursor, sizes: &sizes)
            cursor.append("\" error.type=\"")
            cursor.appendEscaped(errorType, style: valueStyle)
            cursor.append(UInt8(ascii: "\""))
        }
        cursor.append(UInt8(ascii: "]"))
        if !record.message.description.isEmpty || plan.droppedBytes != nil {
            cursor.append(UInt8(ascii: " "))
            self.writeMessage(
                record,
                style: .syslogMessage(escapeControls: escapeControls),
                plan: plan,
                into: &cursor,
                sizes: &sizes
            )
        }
        if !options.octetCounting {
            cursor.append(UInt8(ascii: "\n"))
        }
    }
}
