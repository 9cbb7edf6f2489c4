/// A word of a command that nk3 prints for the user to copy (hints such as `nk3 certs init -i FILE`).
enum ShellWord {
    /// `word` as is when it needs no quoting in POSIX sh, else in single quotes (embedded ones as '\'').
    static func quoted(_ word: String) -> String {
        let plain = !word.isEmpty && word.unicodeScalars.allSatisfy { s in
            (s >= "a" && s <= "z") || (s >= "A" && s <= "Z") || (s >= "0" && s <= "9") || "._-/+=:,@%".unicodeScalars.contains(s)
        }
        return plain ? word : "'" + word.replacing("'", with: "'\\''") + "'"
    }
}
