internal import Yams

/// Bounds on the shape of configuration YAML, checked where Yams cannot be trusted with it: its
/// composer recurses once per nesting level (`databases: [[[[...` a few thousand deep overflows
/// the stack of a tool, or of the process that loads the extension), and aliases let a few lines
/// stand for a tree of billions of nodes. `scan` reads the text before Yams sees it, without
/// recursion; `measure` walks the composed tree with a budget, before anything else does.
///
/// A configuration nests six levels at most (`databases` > item > `levels` > item > `interval`),
/// so the limits are far above any real file and far below any stack.
enum ConfigShape {
    /// Collections open at once, as `scan` estimates them (never less than Yams will build).
    static let maxDepth = 32
    /// `*alias` references in the text.
    static let maxAliases = 100
    /// Nodes of the composed tree, aliases expanded.
    static let maxNodes = 10_000
    /// Bytes of configuration text (`ReplicationConfig.load` refuses larger files unread).
    static let maxBytes = 1 << 20

    struct Violation: Error, Equatable {
        /// 1-based.
        var line: Int
        var message: String
    }

    // MARK: Text

    /// Estimates, from the text alone, how deeply collections nest and counts aliases. The
    /// estimate is an upper bound of what libyaml and Yams build from the same text (quoted
    /// scalars, block scalars and comments are skipped as libyaml skips them; where the text is
    /// ambiguous or invalid the estimate only grows), so a text that passes cannot overflow the
    /// composer's stack.
    static func scan(_ text: String) -> Violation? {
        var scanner = Scanner(Array(text.utf8))
        return scanner.run()
    }

    /// The deepest nesting `scan` estimates for `text` (it stops counting past `maxDepth`).
    static func estimatedDepth(_ text: String) -> Int {
        var scanner = Scanner(Array(text.utf8))
        _ = scanner.run()
        return scanner.deepest
    }

    private struct Scanner {
        enum Mode {
            case block
            case flow
            /// Quoted scalar; `flow` says which mode it returns to.
            case singleQuoted(flow: Bool)
            case doubleQuoted(flow: Bool)
            /// `|` or `>` content: lines indented at least `indent` (nil until the first line
            /// sets it), under a block collection at column `parent`.
            case blockScalar(parent: Int, indent: Int?, blankIndent: Int)
        }

        let bytes: [UInt8]
        var position = 0
        var line = 1
        /// Where the current line starts (columns count from here; indentation is ASCII).
        var lineStart = 0
        var mode = Mode.block
        /// Open block collections: the column of their entries, and whether they are sequences.
        var blocks: [(column: Int, sequence: Bool)] = []
        /// Open flow collections, counted as nesting levels (`[` counts two: `[a: b]` holds an
        /// implicit mapping).
        var flowLevels: [Int] = []
        /// In flow mode: a node may start here (quotes open quoted scalars only there).
        var flowNodeStart = true
        /// Column where the outermost flow collection started (a flow collection may be a key).
        var flowColumn = 0
        /// The last thing on the previous block line was a plain scalar, which may go on.
        var plainOpen = false
        /// The previous block line ended where a value may follow (`key:`, `-`, `&anchor`).
        var valuePending = false
        var aliases = 0
        /// The most collections seen open at once.
        var deepest = 0
        var violation: Violation?

        init(_ bytes: [UInt8]) {
            self.bytes = bytes
            // A byte order mark is not content.
            if bytes.starts(with: [0xEF, 0xBB, 0xBF]) {
                position = 3
                lineStart = 3
            }
        }

        var depth: Int { blocks.count + flowLevels.reduce(0, +) }

        mutating func run() -> Violation? {
            while position < bytes.count, violation == nil {
                switch mode {
                case .block: blockLine()
                case .flow: flowRun()
                case .singleQuoted(let flow): singleQuoted(returningToFlow: flow)
                case .doubleQuoted(let flow): doubleQuoted(returningToFlow: flow)
                case .blockScalar(let parent, let indent, let blankIndent):
                    blockScalarLine(parent: parent, indent: indent, blankIndent: blankIndent)
                }
            }
            return violation
        }

        // MARK: Characters

        func byte(_ offset: Int = 0) -> UInt8? {
            position + offset < bytes.count ? bytes[position + offset] : nil
        }

        /// Length of the line break at `offset` (LF, CR, CRLF, NEL, LS, PS), or 0.
        func lineBreak(at offset: Int = 0) -> Int {
            let index = position + offset
            guard index < bytes.count else { return 0 }
            switch bytes[index] {
            case 0x0A: return 1
            case 0x0D: return index + 1 < bytes.count && bytes[index + 1] == 0x0A ? 2 : 1
            case 0xC2: return index + 1 < bytes.count && bytes[index + 1] == 0x85 ? 2 : 0
            case 0xE2:
                return index + 2 < bytes.count && bytes[index + 1] == 0x80
                    && (bytes[index + 2] == 0xA8 || bytes[index + 2] == 0xA9) ? 3 : 0
            default: return 0
            }
        }

        func isBlank(_ b: UInt8?) -> Bool { b == 0x20 || b == 0x09 }

        /// Blank, line break or end of text at `offset`.
        func isBlankOrEnd(at offset: Int) -> Bool {
            guard let b = byte(offset) else { return true }
            return isBlank(b) || lineBreak(at: offset) > 0
        }

        func atLineEnd() -> Bool { position >= bytes.count || lineBreak() > 0 }

        /// Moves past the line break at `position` (or to the end).
        mutating func newLine() {
            let length = lineBreak()
            position += max(length, 1)
            lineStart = position
            line += 1
        }

        mutating func skipToLineEnd() {
            while position < bytes.count, lineBreak() == 0 { position += 1 }
        }

        mutating func skipBlanks() {
            while isBlank(byte()) { position += 1 }
        }

        func column() -> Int { position - lineStart }

        /// libyaml's anchor and alias names: letters, digits, `-` and `_`.
        mutating func skipName() {
            while let b = byte(), b >= 0x80 || b == UInt8(ascii: "-") || b == UInt8(ascii: "_")
                || (b >= 0x30 && b <= 0x39) || ((b | 0x20) >= 0x61 && (b | 0x20) <= 0x7A)
            {
                position += 1
            }
        }

        mutating func fail(_ message: String) {
            if violation == nil { violation = Violation(line: line, message: message) }
        }

        mutating func checkDepth() {
            deepest = max(deepest, depth)
            if depth > ConfigShape.maxDepth {
                fail("collections nest more than \(ConfigShape.maxDepth) levels deep (a configuration needs 6)")
            }
        }

        mutating func countAlias() {
            aliases += 1
            if aliases > ConfigShape.maxAliases { fail("more than \(ConfigShape.maxAliases) aliases ('*name')") }
        }

        // MARK: Block context

        mutating func push(column: Int, sequence: Bool) {
            blocks.append((column, sequence))
            checkDepth()
        }

        /// A mapping key at `column`: the mapping is open there (a sequence at the same column,
        /// the value of the previous key, ends here).
        mutating func keyAt(column: Int) {
            if let top = blocks.last, top.column == column, top.sequence { blocks.removeLast() }
            if let top = blocks.last, top.column == column, !top.sequence { return }
            push(column: column, sequence: false)
        }

        mutating func blockLine() {
            while byte() == 0x20 { position += 1 }
            let indent = column()
            skipBlanks()
            if atLineEnd() || byte() == UInt8(ascii: "#") {
                // A comment ends a plain scalar; a blank line does not.
                if !atLineEnd() { plainOpen = false }
                endLine()
                return
            }
            if position == lineStart, byte() == UInt8(ascii: "%") {
                skipToLineEnd()
                return
            }
            // A plain scalar goes on on a line indented under the collection it belongs to.
            let parentColumn = blocks.last?.column ?? -1
            if plainOpen, !valuePending, indent > parentColumn {
                plainContinuation()
                return
            }
            plainOpen = false
            valuePending = false
            if position == lineStart,
                (bytes[position...].starts(with: "---".utf8) || bytes[position...].starts(with: "...".utf8)),
                isBlankOrEnd(at: 3)
            {
                blocks.removeAll()
                position += 3
                skipBlanks()
                node(atLineStart: false)
                return
            }
            while let top = blocks.last, top.column > indent { blocks.removeLast() }
            node(atLineStart: true)
        }

        /// The rest of a line that continues a plain scalar: only `: ` (a key, if anything) and
        /// comments mean something there.
        mutating func plainContinuation() {
            let start = column()
            while !atLineEnd() {
                if byte() == UInt8(ascii: ":"), isBlankOrEnd(at: 1) {
                    plainOpen = false
                    keyAt(column: start)
                    position += 1
                    skipBlanks()
                    node(atLineStart: false)
                    return
                }
                if isBlank(byte()), byte(1) == UInt8(ascii: "#") { break }
                position += 1
            }
            skipToLineEnd()
        }

        /// A node starts at `position` (indicators first: `- `, `? `, properties), in block mode.
        mutating func node(atLineStart: Bool) {
            // Sequence entries and complex keys, possibly several on one line (`- - a`).
            while let b = byte(), b == UInt8(ascii: "-") || b == UInt8(ascii: "?"), isBlankOrEnd(at: 1) {
                let column = column()
                if b == UInt8(ascii: "-") {
                    if let top = blocks.last, top.column == column, top.sequence {
                        // the next entry of an open sequence
                    } else {
                        push(column: column, sequence: true)
                    }
                } else {
                    keyAt(column: column)
                }
                position += 1
                skipBlanks()
            }
            value(keyColumn: column())
        }

        /// A node that is not an indicator: properties, then an alias, a flow collection, a
        /// quoted or block scalar, or a plain scalar (which may turn out to be a key).
        mutating func value(keyColumn: Int) {
            while let b = byte(), b == UInt8(ascii: "&") || b == UInt8(ascii: "!") {
                position += 1
                if b == UInt8(ascii: "&") {
                    skipName()
                } else {
                    while !isBlankOrEnd(at: 0) { position += 1 }
                }
                skipBlanks()
            }
            guard let b = byte(), lineBreak() == 0 else {
                valuePending = true
                endLine()
                return
            }
            switch b {
            case UInt8(ascii: "#"):
                valuePending = true
                endLine()
            case UInt8(ascii: "*"):
                countAlias()
                position += 1
                skipName()
                afterScalar(keyColumn: keyColumn)
            case UInt8(ascii: "["), UInt8(ascii: "{"):
                flowColumn = keyColumn
                mode = .flow
                flowNodeStart = true
                openFlow(b)
            case UInt8(ascii: "'"):
                position += 1
                mode = .singleQuoted(flow: false)
                quotedKeyColumn = keyColumn
            case UInt8(ascii: "\""):
                position += 1
                mode = .doubleQuoted(flow: false)
                quotedKeyColumn = keyColumn
            case UInt8(ascii: "|"), UInt8(ascii: ">"):
                position += 1
                var explicit: Int?
                while let h = byte(), h == UInt8(ascii: "-") || h == UInt8(ascii: "+") || (h >= 0x31 && h <= 0x39) {
                    if h >= 0x31 && h <= 0x39 { explicit = Int(h - 0x30) }
                    position += 1
                }
                let parent = blocks.last?.column ?? -1
                let indent = explicit.map { parent >= 0 ? parent + $0 : $0 }
                endLine()
                mode = .blockScalar(parent: parent, indent: indent, blankIndent: 0)
            default:
                plain(keyColumn: keyColumn)
            }
        }

        /// Where a quoted scalar in block mode started, in case it is a key.
        var quotedKeyColumn = 0

        /// A plain scalar in block mode: it ends at `: ` (then it was a key), at a comment or at
        /// the end of the line (then it may go on on the next line).
        mutating func plain(keyColumn: Int) {
            while !atLineEnd() {
                if keyIndicator(keyColumn: keyColumn) { return }
                if isBlank(byte()), byte(1) == UInt8(ascii: "#") {
                    plainOpen = false
                    endLine()
                    return
                }
                position += 1
            }
            plainOpen = true
            endLine()
        }

        /// After a scalar or a flow collection in block mode: a `:` makes it a key.
        mutating func afterScalar(keyColumn: Int) {
            skipBlanks()
            if keyIndicator(keyColumn: keyColumn) { return }
            endLine()
        }

        /// At `: ` (or `:` at the end of a line), what came before was a key at `keyColumn`:
        /// records it and goes on with its value. Returns false, moving nothing, elsewhere.
        mutating func keyIndicator(keyColumn: Int) -> Bool {
            guard byte() == UInt8(ascii: ":"), isBlankOrEnd(at: 1) else { return false }
            keyAt(column: keyColumn)
            position += 1
            skipBlanks()
            value(keyColumn: column())
            return true
        }

        /// Skips to the start of the next line (whatever is left is a comment or an error).
        mutating func endLine() {
            skipToLineEnd()
            if position < bytes.count { newLine() }
        }

        // MARK: Flow context

        mutating func openFlow(_ b: UInt8) {
            flowLevels.append(b == UInt8(ascii: "[") ? 2 : 1)
            position += 1
            flowNodeStart = true
            checkDepth()
        }

        mutating func flowRun() {
            while position < bytes.count, violation == nil {
                if lineBreak() > 0 {
                    newLine()
                    continue
                }
                let b = bytes[position]
                if isBlank(b) {
                    position += 1
                    continue
                }
                let afterBlank = position == lineStart || isBlank(bytes[position - 1])
                switch b {
                case UInt8(ascii: "#") where afterBlank:
                    skipToLineEnd()
                case UInt8(ascii: "["), UInt8(ascii: "{"):
                    openFlow(b)
                case UInt8(ascii: "]"), UInt8(ascii: "}"):
                    flowLevels.removeLast()
                    position += 1
                    flowNodeStart = false
                    if flowLevels.isEmpty {
                        mode = .block
                        afterScalar(keyColumn: flowColumn)
                        return
                    }
                case UInt8(ascii: ","):
                    position += 1
                    flowNodeStart = true
                case UInt8(ascii: ":"), UInt8(ascii: "?"):
                    // An indicator when followed by a blank, a flow indicator or the line's end;
                    // otherwise part of a plain scalar.
                    let next = byte(1)
                    let indicator =
                        isBlankOrEnd(at: 1) || next == UInt8(ascii: ",") || next == UInt8(ascii: "[")
                        || next == UInt8(ascii: "]") || next == UInt8(ascii: "{") || next == UInt8(ascii: "}")
                    position += 1
                    if indicator { flowNodeStart = true } else { flowNodeStart = false }
                case UInt8(ascii: "'") where flowNodeStart:
                    position += 1
                    mode = .singleQuoted(flow: true)
                    return
                case UInt8(ascii: "\"") where flowNodeStart:
                    position += 1
                    mode = .doubleQuoted(flow: true)
                    return
                case UInt8(ascii: "*") where flowNodeStart:
                    countAlias()
                    position += 1
                    flowNodeStart = false
                case UInt8(ascii: "&"), UInt8(ascii: "!"):
                    // Properties come before a node: a quote after them still opens a scalar.
                    let start = flowNodeStart
                    position += 1
                    if b == UInt8(ascii: "&") {
                        skipName()
                    } else {
                        while position < bytes.count, !isBlankOrEnd(at: 0), !",[]{}".utf8.contains(bytes[position]) {
                            position += 1
                        }
                    }
                    flowNodeStart = start
                default:
                    position += 1
                    flowNodeStart = false
                }
            }
        }

        // MARK: Quoted scalars

        mutating func singleQuoted(returningToFlow flow: Bool) {
            while position < bytes.count {
                if lineBreak() > 0 {
                    newLine()
                    continue
                }
                if bytes[position] == UInt8(ascii: "'") {
                    if byte(1) == UInt8(ascii: "'") {
                        position += 2
                        continue
                    }
                    position += 1
                    endQuoted(returningToFlow: flow)
                    return
                }
                position += 1
            }
        }

        mutating func doubleQuoted(returningToFlow flow: Bool) {
            while position < bytes.count {
                if lineBreak() > 0 {
                    newLine()
                    continue
                }
                switch bytes[position] {
                case UInt8(ascii: "\\"):
                    position += 1
                    if lineBreak() > 0 { newLine() } else if position < bytes.count { position += 1 }
                case UInt8(ascii: "\""):
                    position += 1
                    endQuoted(returningToFlow: flow)
                    return
                default:
                    position += 1
                }
            }
        }

        mutating func endQuoted(returningToFlow flow: Bool) {
            if flow {
                mode = .flow
                flowNodeStart = false
            } else {
                mode = .block
                afterScalar(keyColumn: quotedKeyColumn)
            }
        }

        // MARK: Block scalars

        /// One line of `|` or `>` content, or the first line after it (handed back to block mode).
        mutating func blockScalarLine(parent: Int, indent: Int?, blankIndent: Int) {
            while byte() == 0x20 { position += 1 }
            let spaces = column()
            if atLineEnd() {
                if position < bytes.count { newLine() }
                mode = .blockScalar(parent: parent, indent: indent, blankIndent: max(blankIndent, spaces))
                return
            }
            // libyaml: the content's indentation is that of its first line, and more than the
            // collection's.
            let contentIndent = indent ?? max(spaces, blankIndent, parent + 1, 1)
            if spaces >= contentIndent {
                endLine()
                mode = .blockScalar(parent: parent, indent: contentIndent, blankIndent: 0)
                return
            }
            position = lineStart
            mode = .block
        }
    }

    // MARK: Tree

    /// How deeply collections nest in what Yams composes from `text` (1: a flat collection), or
    /// nil when it is not valid YAML. For tests of `scan`; `text` must not be deep itself.
    static func composedDepth(_ text: String) -> Int? {
        let composed: Node?
        do { composed = try Yams.compose(yaml: text) } catch { return nil }
        guard let root = composed else { return 0 }
        var deepest = 0
        var pending: [(node: Node, depth: Int)] = [(root, 0)]
        while let (node, depth) = pending.popLast() {
            switch node {
            case .scalar: deepest = max(deepest, depth)
            case .sequence(let sequence):
                deepest = max(deepest, depth + 1)
                for child in sequence { pending.append((child, depth + 1)) }
            case .mapping(let mapping):
                deepest = max(deepest, depth + 1)
                for (key, value) in mapping { pending.append(contentsOf: [(key, depth + 1), (value, depth + 1)]) }
            }
        }
        return deepest
    }

    /// Walks the composed tree, aliases expanded, without recursion: at most `maxNodes` nodes
    /// and `maxDepth` levels (an alias of a deep collection inside another deep one goes deeper
    /// than the text shows). Returns the line of the node where a limit was passed.
    static func measure(_ root: Node) -> Violation? {
        var pending: [(node: Node, depth: Int)] = [(root, 1)]
        var visited = 0
        while let (node, depth) = pending.popLast() {
            visited += 1
            let line = node.mark?.line ?? 0
            if visited > maxNodes {
                return Violation(
                    line: line, message: "the configuration expands to more than \(maxNodes) values through aliases")
            }
            switch node {
            case .scalar: continue
            case .sequence(let sequence):
                if depth > maxDepth {
                    return Violation(
                        line: line, message: "collections nest more than \(maxDepth) levels deep through aliases")
                }
                for child in sequence { pending.append((child, depth + 1)) }
            case .mapping(let mapping):
                if depth > maxDepth {
                    return Violation(
                        line: line, message: "collections nest more than \(maxDepth) levels deep through aliases")
                }
                for (key, value) in mapping {
                    pending.append((key, depth + 1))
                    pending.append((value, depth + 1))
                }
            }
        }
        return nil
    }
}
