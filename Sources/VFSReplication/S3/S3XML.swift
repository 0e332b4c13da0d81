import Foundation

#if canImport(FoundationXML)
    internal import FoundationXML
#endif

/// A parsed XML element: the few S3 response documents we read (ListBucketResult, Error,
/// InitiateMultipartUploadResult, CompleteMultipartUploadResult, DeleteResult) are small trees,
/// read into this shape with Foundation's `XMLParser`. Namespaces are ignored.
///
/// ```swift
/// let root = S3XML.parse(body)            // nil when the body is not XML
/// root?.value("NextContinuationToken")    // text of a direct child
/// ```
///
/// https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectsV2.html
struct S3XMLElement: Sendable {
    var name: String
    var text: String = ""
    var children: [S3XMLElement] = []

    func child(_ name: String) -> S3XMLElement? { children.first { $0.name == name } }

    func children(_ name: String) -> [S3XMLElement] { children.filter { $0.name == name } }

    /// The text of the first direct child called `name`.
    func value(_ name: String) -> String? { child(name)?.text }
}

enum S3XML {
    static func parse(_ bytes: [UInt8]) -> S3XMLElement? {
        guard !bytes.isEmpty else { return nil }
        let parser = XMLParser(data: Data(bytes))
        let builder = TreeBuilder()
        parser.delegate = builder
        parser.shouldProcessNamespaces = false
        parser.shouldResolveExternalEntities = false
        guard parser.parse(), let root = builder.root else { return nil }
        return root
    }

    /// Escapes text for an element body.
    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for ch in text.unicodeScalars {
            switch ch {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            default:
                // Control characters are not allowed in XML 1.0 text; S3 wants them as references.
                if ch.value < 0x20 && ch != "\n" && ch != "\t" {
                    out += "&#\(ch.value);"
                } else {
                    out.unicodeScalars.append(ch)
                }
            }
        }
        return out
    }

    /// Parses S3's `2009-10-12T17:50:30.000Z` (fractional seconds optional).
    static func parseTimestamp(_ text: String) -> Date? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let date = formatter.date(from: text) { return date }
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.date(from: text)
    }

    private final class TreeBuilder: NSObject, XMLParserDelegate {
        var stack: [S3XMLElement] = []
        var root: S3XMLElement?

        func parser(
            _ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?,
            qualifiedName qName: String?, attributes attributeDict: [String: String] = [:]
        ) {
            let local = elementName.split(separator: ":").last.map(String.init) ?? elementName
            stack.append(S3XMLElement(name: local))
        }

        func parser(_ parser: XMLParser, foundCharacters string: String) {
            guard !stack.isEmpty else { return }
            stack[stack.count - 1].text += string
        }

        func parser(_ parser: XMLParser, foundCDATA CDATABlock: Data) {
            guard !stack.isEmpty else { return }
            stack[stack.count - 1].text += String(decoding: CDATABlock, as: UTF8.self)
        }

        func parser(
            _ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName qName: String?
        ) {
            guard let done = stack.popLast() else { return }
            if stack.isEmpty { root = done } else { stack[stack.count - 1].children.append(done) }
        }
    }
}
