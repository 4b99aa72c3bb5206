//===----------------------------------------------------------------------===//
//
// This source file is part of the swift-relay open source project
//
// SPDX-License-Identifier: Apache-2.0
//
//===----------------------------------------------------------------------===//

package import Logging

/// The wire format of a log record.
public enum RecordFormat: Equatable, Sendable {
    /// One JSON object per line (JSON Lines / NDJSON), terminated by `\n`. The default.
    ///
    /// ```
    /// {"timestamp":"2026-11-27T15:58:35.123456Z","level":"info","label":"app","message":"hi",
    ///  "metadata":{"k":"v"},"source":"App","file":"App/main.swift","function":"run()","line":42,
    ///  "error":{"message":"...","type":"..."}}
    /// ```
    /// (one line; `metadata` only when there is some, `error` only when there is one). Metadata is
    /// nested JSON: dictionaries are objects, arrays are arrays, strings and `stringConvertible`
    /// values are strings.
    case jsonLines

    /// logfmt, one record per line terminated by `\n`:
    ///
    /// ```
    /// ts=2026-11-27T15:58:35.123456Z level=info label=app msg="hi" k=v source=App file=App/main.swift
    /// function=run() line=42 error="..." error.type=...
    /// ```
    ///
    /// `msg` and `error` are always quoted; other values are quoted only when they are empty or hold a
    /// space, `=`, `"`, `\`, a control character or a line break. Quoted values use JSON string
    /// escapes. Nested metadata is flattened with dotted keys: `["http": ["status": "200"]]` is
    /// `http.status=200`, array elements are numbered (`tags.0=a tags.1=b`), and an empty dictionary
    /// or array is written as `{}` or `[]`. Keys that are not valid logfmt keys have the offending
    /// characters replaced with `_` (an empty key is `_`).
    ///
    /// A metadata key never reads as a fixed field: a flattened key that is `ts`, `level`, `label`,
    /// `msg`, `source`, `file`, `function`, `line`, `error` or `error.type`, possibly behind
    /// underscores, gets one more `_` in front (`msg=…` from metadata is written `_msg=…`, `_msg` is
    /// `__msg`, `["error": ["type": "x"]]` is `_error.type=x`); other keys are unchanged. See
    /// `FixedFieldNames`.
    case logfmt

    /// RFC 5424 syslog, LF-terminated or RFC 6587 octet-counted (see ``RFC5424Options``).
    ///
    /// ```
    /// <14>1 2026-11-27T15:58:35.123456Z host app 1234 - [meta@32473 k="v" source="App"
    /// file="App/main.swift" function="run()" line="42"] hi
    /// ```
    ///
    /// Metadata become `SD-PARAM`s of the one element, flattened like logfmt keys. A `PARAM-NAME` is
    /// 1 to 32 bytes of printable US-ASCII other than `=`, space, `]` and `"`: other characters become
    /// `_`, an empty key is `_`, and longer names are cut to 32 bytes. A name that is `source`, `file`,
    /// `function`, `line`, `error` or `error.type`, possibly behind underscores, gets one more `_` in
    /// front (cut to 32 bytes again), so metadata never reads as one of the fixed parameters.
    case rfc5424(RFC5424Options)
}

/// A syslog facility (RFC 5424 §6.2.1).
public enum SyslogFacility: UInt8, CaseIterable, Sendable {
    /// Kernel messages.
    case kernel = 0
    /// User-level messages.
    case user = 1
    /// Mail system.
    case mail = 2
    /// System daemons.
    case daemon = 3
    /// Security/authorization messages.
    case auth = 4
    /// Messages generated internally by syslogd.
    case syslog = 5
    /// Line printer subsystem.
    case lpr = 6
    /// Network news subsystem.
    case news = 7
    /// UUCP subsystem.
    case uucp = 8
    /// Clock daemon.
    case cron = 9
    /// Security/authorization messages (private).
    case authpriv = 10
    /// FTP daemon.
    case ftp = 11
    /// NTP subsystem.
    case ntp = 12
    /// Log audit.
    case audit = 13
    /// Log alert.
    case alert = 14
    /// Clock daemon (note 2).
    case clock = 15
    /// Local use 0.
    case local0 = 16
    /// Local use 1.
    case local1 = 17
    /// Local use 2.
    case local2 = 18
    /// Local use 3.
    case local3 = 19
    /// Local use 4.
    case local4 = 20
    /// Local use 5.
    case local5 = 21
    /// Local use 6.
    case local6 = 22
    /// Local use 7.
    case local7 = 23
}

/// Settings of the RFC 5424 format.
///
/// The header fields are sanitised once, here: characters outside printable US-ASCII (33...126)
/// become `_`, each field is cut to its RFC 5424 maximum (HOSTNAME 255, APP-NAME 48, PROCID 128,
/// MSGID 32 bytes), and `nil` or empty becomes the NIL value `-`. The structured-data ID is sanitised
/// as an `SD-NAME` (max 32 bytes). The rendered header bytes are kept so that encoding a record only
/// copies them.
public struct RFC5424Options: Equatable, Sendable {
    /// The `HOSTNAME` field as given (`nil` writes `-`).
    public let hostname: String?
    /// The `APP-NAME` field as given (`nil` writes `-`).
    public let appName: String?
    /// The `PROCID` field as given (`nil` writes `-`).
    public let procID: String?
    /// The `MSGID` field as given (`nil` writes `-`).
    public let msgID: String?
    /// The facility; `PRI` is `facility * 8 + severity`.
    public let facility: SyslogFacility
    /// RFC 6587 §3.4.1 octet-counting framing (`MSG-LEN SP SYSLOG-MSG`, no trailer) instead of
    /// LF-terminated records. With LF framing, control characters in values and in `MSG` are escaped as
    /// `#ooo` so that a record is always one line; with octet counting they are copied as they are.
    public let octetCounting: Bool
    /// The `SD-ID` of the element that carries metadata, source, file, function, line and error.
    /// The default `meta@32473` uses the enterprise number reserved for documentation (RFC 5612);
    /// use your own private enterprise number in production.
    public let structuredDataID: String

    /// `" HOSTNAME APP-NAME PROCID MSGID ["` followed by the sanitised SD-ID, as bytes.
    internal let renderedHeader: [UInt8]

    /// Creates RFC 5424 settings.
    ///
    /// - Parameters:
    ///   - hostname: The `HOSTNAME` field, or `nil` for `-`.
    ///   - appName: The `APP-NAME` field, or `nil` for `-`.
    ///   - procID: The `PROCID` field (usually the process ID), or `nil` for `-`.
    ///   - msgID: The `MSGID` field, or `nil` for `-`.
    ///   - facility: The facility (default `.user`).
    ///   - octetCounting: Use RFC 6587 octet-counting framing (for TCP) instead of an LF trailer.
    ///   - structuredDataID: The SD-ID of the metadata element.
    public init(
        hostname: String? = nil,
        appName: String? = nil,
        procID: String? = nil,
        msgID: String? = nil,
        facility: SyslogFacility = .user,
        octetCounting: Bool = false,
        structuredDataID: String = "meta@32473"
    ) {
        self.hostname = hostname
        self.appName = appName
        self.procID = procID
        self.msgID = msgID
        self.facility = facility
        self.octetCounting = octetCounting
        self.structuredDataID = structuredDataID

        var header: [UInt8] = []
        func field(_ value: String?, maxLength: Int) {
            header.append(UInt8(ascii: " "))
            guard let value, !value.isEmpty else {
                header.append(UInt8(ascii: "-"))
                return
            }
            var length = 0
            for scalar in value.unicodeScalars where length < maxLength {
                let v = scalar.value
                header.append(v > 0x20 && v < 0x7F ? UInt8(v) : UInt8(ascii: "_"))
                length += 1
            }
        }
        field(hostname, maxLength: 255)
        field(appName, maxLength: 48)
        field(procID, maxLength: 128)
        field(msgID, maxLength: 32)
        header.append(contentsOf: " [".utf8)
        let sdID = structuredDataID.isEmpty ? "meta@32473" : structuredDataID
        var length = 0
        for scalar in sdID.unicodeScalars where length < 32 {
            let v = scalar.value
            let ok = v > 0x20 && v < 0x7F && v != 0x3D && v != 0x5D && v != 0x22  // = ] "
            header.append(ok ? UInt8(v) : UInt8(ascii: "_"))
            length += 1
        }
        self.renderedHeader = header
    }
}

extension RecordFormat {
    /// How metadata is rendered in this format.
    internal var metadataStyle: MetadataStyle {
        switch self {
        case .jsonLines: return .json
        case .logfmt: return .logfmt
        case .rfc5424(let options): return .structuredData(escapeControls: !options.octetCounting)
        }
    }
}

extension Logger.Level {
    /// The RFC 5424 severity of a swift-log level: trace and debug are Debug (7), info is
    /// Informational (6), notice is Notice (5), warning is Warning (4), error is Error (3) and critical
    /// is Critical (2).
    package var syslogSeverity: UInt8 {
        switch self {
        case .trace, .debug: return 7
        case .info: return 6
        case .notice: return 5
        case .warning: return 4
        case .error: return 3
        case .critical: return 2
        }
    }

    /// The level's name as a static string (the same text as `rawValue`, without a `String`).
    internal var staticName: StaticString {
        switch self {
        case .trace: return "trace"
        case .debug: return "debug"
        case .info: return "info"
        case .notice: return "notice"
        case .warning: return "warning"
        case .error: return "error"
        case .critical: return "critical"
        }
    }
}
