/// A table being decoded, with the key path used in error messages.
struct ConfigTable {
    /// The table's own path (`""` for the root, `inputs[0]`, `channels.default`).
    var path: String
    /// The table's entries.
    var entries: [(key: String, value: ConfigValue)]

    /// The entry for `key`, if present.
    subscript(key: String) -> ConfigValue? {
        self.entries.first(where: { $0.key == key })?.value
    }

    /// Whether `key` is present.
    func contains(_ key: String) -> Bool {
        self.entries.contains(where: { $0.key == key })
    }

    /// The path of `key` inside this table.
    func path(_ key: String) -> String {
        self.path.isEmpty ? key : "\(self.path).\(key)"
    }
}
