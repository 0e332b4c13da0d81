import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Multipart uploads: CreateMultipartUpload, UploadPart (sequentially: R2 answers 500 under high
/// part concurrency), CompleteMultipartUpload (with `If-None-Match: *` for conditional writes),
/// AbortMultipartUpload on any failure so no parts are left behind. All parts but the last have
/// the same size, as R2 requires.
///
/// https://docs.aws.amazon.com/AmazonS3/latest/userguide/mpuoverview.html
/// https://developers.cloudflare.com/r2/objects/multipart-objects/
extension S3Client {
    /// S3 allows at most this many parts.
    public static let maxParts: Int64 = 10_000

    /// The part size for an object of `length` bytes: `preferred` (at least 5 MiB), grown in
    /// whole MiB when the object would otherwise need more than 10,000 parts.
    public static func partSize(forLength length: Int64, preferred: Int64) -> Int64 {
        var size = max(preferred, S3ClientOptions.minimumPartSize)
        let needed = (length + maxParts - 1) / maxParts
        if needed > size {
            let mib: Int64 = 1 << 20
            size = (needed + mib - 1) / mib * mib
        }
        return size
    }

    /// The ETag S3 gives a multipart object: MD5 of the parts' MD5s, then `-<part count>`.
    static func multipartETag(partMD5s: [[UInt8]]) -> String {
        "\"\(S3Crypto.hex(S3Crypto.md5(partMD5s.flatMap { $0 })))-\(partMD5s.count)\""
    }

    func multipartUpload(
        key: String, source: S3UploadSource, ifNoneMatch: Bool, metadata: [String: String], contentType: String?
    ) throws -> S3PutOutcome {
        var createHeaders = metadataHeaders(metadata)
        if let contentType { createHeaders.append(("content-type", contentType)) }
        let created = try perform(
            S3Call(
                operation: "CreateMultipartUpload", kind: .multipart, method: "POST", key: key,
                query: [("uploads", "")], headers: createHeaders))
        guard let uploadID = S3XML.parse(created.body)?.value("UploadId"), !uploadID.isEmpty else {
            throw ReplicationError(
                .io, "S3 CreateMultipartUpload \(url(key: key)) (endpoint \(endpointURL)): no UploadId in the response")
        }
        do {
            let size = S3Client.partSize(forLength: source.length, preferred: options.partSize)
            var parts: [(number: Int, etag: String)] = []
            var partMD5s: [[UInt8]] = []
            var offset: Int64 = 0
            while offset < source.length {
                let length = min(size, source.length - offset)
                let number = parts.count + 1
                let digests = try source.digests(offset: offset, length: length)
                let response = try perform(
                    S3Call(
                        operation: "UploadPart", kind: .multipart, method: "PUT", key: key,
                        query: [("partNumber", String(number)), ("uploadId", uploadID)],
                        headers: [("content-md5", S3Crypto.base64(digests.md5))],
                        body: source.body(offset: offset, length: length), payloadHash: S3Crypto.hex(digests.sha256),
                        target: "\(url(key: key)) part \(number)"))
                guard let etag = response.headers["etag"], !etag.isEmpty else {
                    throw ReplicationError(
                        .io,
                        "S3 UploadPart \(url(key: key)) part \(number) (endpoint \(endpointURL)): "
                            + "no ETag in the response"
                    )
                }
                parts.append((number, etag))
                partMD5s.append(digests.md5)
                offset += length
            }
            let expectedETag = S3Client.multipartETag(partMD5s: partMD5s)

            var xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
            xml += "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
            for part in parts {
                xml += "<Part><PartNumber>\(part.number)</PartNumber><ETag>\(S3XML.escape(part.etag))</ETag></Part>"
            }
            xml += "</CompleteMultipartUpload>"
            let body = Array(xml.utf8)
            var headers: [(String, String)] = [("content-type", "application/xml")]
            if ifNoneMatch { headers.append(("if-none-match", "*")) }
            let response: HTTPResponse
            do {
                response = try performRetrying(
                    S3Call(
                        operation: "CompleteMultipartUpload", kind: .multipart, method: "POST", key: key,
                        query: [("uploadId", uploadID)], headers: headers, body: .bytes(body),
                        payloadHash: S3Crypto.hex(S3Crypto.sha256(body)), accept: ifNoneMatch ? [412] : [],
                        errorMayComeIn200: true))
            } catch let error as S3CallError where error.failure.s3Code == "NoSuchUpload" && error.failure.attempts > 1
            {
                // A retried Complete whose first attempt went through: the upload is gone
                // because it became the object. Make sure it is ours.
                if let existing = try headObject(key: key), existing.etag?.lowercased() == expectedETag.lowercased() {
                    return .created(etag: existing.etag)
                }
                throw error.failure.error
            } catch let error as S3CallError {
                throw error.failure.error
            }
            if response.status == 412 {
                abortMultipartUpload(key: key, uploadID: uploadID)
                return try existingOutcome(key: key, expectedETag: expectedETag)
            }
            let etag = response.headers["etag"] ?? S3XML.parse(response.body)?.value("ETag")
            return .created(etag: etag)
        } catch {
            abortMultipartUpload(key: key, uploadID: uploadID)
            throw error
        }
    }

    /// Best effort: a failure is logged, not thrown (the caller already has an error to report,
    /// and a bucket lifecycle rule can clean up incomplete uploads).
    func abortMultipartUpload(key: String, uploadID: String) {
        do {
            _ = try perform(
                S3Call(
                    operation: "AbortMultipartUpload", kind: .multipart, method: "DELETE", key: key,
                    query: [("uploadId", uploadID)], accept: [404]))
        } catch {
            logger.info(
                "could not abort a multipart upload",
                metadata: ["s3.key": "\(key)", "s3.error": "\((error as? ReplicationError)?.message ?? "\(error)")"])
        }
    }
}

/// The bytes of an upload: an array, or an open file read with `pread` (so parts and retries can
/// read any range again).
final class S3UploadSource {
    let length: Int64
    private let bytes: [UInt8]?
    private let fd: Int32
    private let path: String

    init(_ body: S3Body) throws {
        switch body {
        case .bytes(let bytes):
            self.bytes = bytes
            self.fd = -1
            self.path = "(bytes)"
            self.length = Int64(bytes.count)
        case .file(let path):
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw ReplicationError(.io, "open \(path): \(String(cString: strerror(errno)))") }
            var st = stat()
            guard fstat(fd, &st) == 0 else {
                let message = String(cString: strerror(errno))
                Glibc.close(fd)
                throw ReplicationError(.io, "stat \(path): \(message)")
            }
            self.bytes = nil
            self.fd = fd
            self.path = path
            self.length = Int64(st.st_size)
        }
    }

    func close() {
        if fd >= 0 { Glibc.close(fd) }
    }

    func body(offset: Int64, length: Int64) -> HTTPRequestBody {
        if let bytes {
            if offset == 0 && length == Int64(bytes.count) { return .bytes(bytes) }
            return .bytes(Array(bytes[Int(offset)..<Int(offset + length)]))
        }
        return .file(fd: fd, path: path, offset: offset, length: length)
    }

    /// SHA-256 (for the signature) and MD5 (for Content-MD5 and the expected ETag) of a range.
    func digests(offset: Int64, length: Int64) throws -> (sha256: [UInt8], md5: [UInt8]) {
        let sha = StreamingDigest(.sha256)
        let md5 = StreamingDigest(.md5)
        if let bytes {
            bytes.withUnsafeBytes { all in
                let slice = UnsafeRawBufferPointer(rebasing: all[Int(offset)..<Int(offset + length)])
                sha.update(slice)
                md5.update(slice)
            }
        } else {
            var buffer = [UInt8](repeating: 0, count: 1 << 20)
            var done: Int64 = 0
            while done < length {
                let want = Int(min(Int64(buffer.count), length - done))
                let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, want, off_t(offset + done)) }
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else {
                    let reason = n == 0 ? "file is shorter than expected" : String(cString: strerror(errno))
                    throw ReplicationError(.io, "read \(path): \(reason)")
                }
                buffer.withUnsafeBytes {
                    let slice = UnsafeRawBufferPointer(rebasing: $0[0..<n])
                    sha.update(slice)
                    md5.update(slice)
                }
                done += Int64(n)
            }
        }
        return (sha.finish(), md5.finish())
    }
}
