import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A failed S3 request, turned into the `ReplicationError` a user reads: which operation on
/// which object at which endpoint, the HTTP status and S3 error code (or what broke below
/// HTTP), how many attempts were made, and a hint saying what to check. Never holds secrets.
///
/// ```text
/// S3 PutObject s3://backups/db/0000/0000000000000001-0000000000000001.ltx (endpoint https://x.r2...com):
///   HTTP 403 SignatureDoesNotMatch: The request signature we calculated does not match ...;
///   check access-key-id / secret-access-key
/// ```
///
/// https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html
struct S3Failure {
    enum Cause {
        case http(status: Int, code: String?, message: String?)
        case transport(HTTPTransportError)
        /// A 2xx answer that is not what S3 sends (a proxy's HTML page, a body cut short).
        case malformed(String)
    }

    var operation: String
    /// `s3://bucket/key` or `s3://bucket/prefix`.
    var target: String
    var bucket: String
    var endpoint: String
    var region: String
    var caFile: String?
    var cause: Cause
    var attempts: Int = 1
    var elapsed: Duration = .zero

    /// The S3 error code, if the server sent one.
    var s3Code: String? {
        if case .http(_, let code, _) = cause { return code }
        return nil
    }

    var status: Int? {
        if case .http(let status, _, _) = cause { return status }
        return nil
    }

    var error: ReplicationError {
        var text = "S3 \(operation) \(target) (endpoint \(endpoint)): "
        let code: ReplicationError.Code
        switch cause {
        case .http(let status, let s3Code, let message):
            text += "HTTP \(status)"
            if let s3Code, !s3Code.isEmpty { text += " \(s3Code)" }
            if var message, !message.isEmpty {
                while message.hasSuffix(".") { message.removeLast() }
                text += ": \(message)"
            }
            let (hint, hintCode) = S3Failure.hint(
                status: status, s3Code: s3Code, operation: operation, bucket: bucket,
                endpoint: endpoint, region: region)
            if let hint { text += "; \(hint)" }
            code = hintCode
        case .transport(let failure):
            let (summary, hintCode) = transportSummary(failure)
            text += summary
            code = hintCode
        case .malformed(let problem):
            text += problem
            code = .io
        }
        if attempts > 1 {
            text += " (gave up after \(attempts) attempts in \(String(format: "%.1f", elapsed.s3Seconds)) s)"
        }
        return ReplicationError(code, text)
    }

    static func hint(
        status: Int, s3Code: String?, operation: String, bucket: String, endpoint: String, region: String
    ) -> (String?, ReplicationError.Code) {
        switch s3Code ?? "" {
        case "SignatureDoesNotMatch", "InvalidAccessKeyId", "InvalidClientTokenId", "InvalidToken",
            "ExpiredToken", "InvalidSecurity":
            return ("check access-key-id / secret-access-key", .invalidConfig)
        case "AuthorizationHeaderMalformed", "AuthorizationQueryParametersError":
            return ("check 'region' (requests were signed for '\(region)')", .invalidConfig)
        case "AccessDenied", "AllAccessDisabled":
            return (
                "the credentials were accepted but may not perform \(operation) here: check the key's permissions "
                    + "(bucket policy, API token scope)", .invalidConfig
            )
        case "NoSuchBucket":
            return (
                "bucket '\(bucket)' does not exist at \(endpoint): create it, or fix the bucket in the replica url",
                .invalidConfig
            )
        case "NoSuchKey":
            return (nil, .missingReplica)
        case "RequestTimeTooSkewed":
            return (
                "this machine's clock differs from the server's by more than 15 minutes (clock skew): "
                    + "fix the clock (NTP)",
                .invalidConfig
            )
        case "PermanentRedirect", "AuthorizationHeaderMalformedRegion", "IllegalLocationConstraintException":
            return ("the bucket lives in another region or endpoint: check 'region' and 'endpoint'", .invalidConfig)
        case "":
            break
        default:
            if status == 429 || status >= 500 { return (nil, .io) }
        }
        switch status {
        case 301, 307:
            return ("the bucket lives in another region or endpoint: check 'region' and 'endpoint'", .invalidConfig)
        case 403 where s3Code == nil:
            // HEAD responses have no body, hence no code.
            return (
                "access denied to \(operation) (no error code in the response): check access-key-id / "
                    + "secret-access-key and the key's permissions", .invalidConfig
            )
        case 404 where s3Code == nil:
            return (nil, .missingReplica)
        default:
            return (nil, .io)
        }
    }

    private func transportSummary(_ failure: HTTPTransportError) -> (String, ReplicationError.Code) {
        switch failure.kind {
        case .dns:
            return (
                "could not resolve the host (DNS failure: \(failure.detail)); check 'endpoint' / 'r2-account-id' "
                    + "and this machine's DNS", .io
            )
        case .connectionRefused:
            switch failure.osErrno {
            case ECONNREFUSED, 0:
                return ("connection refused (\(failure.detail)); is the endpoint up? check 'endpoint'", .io)
            case ENETUNREACH, EHOSTUNREACH:
                return ("host unreachable (\(failure.detail)); check 'endpoint' and this machine's network", .io)
            default:
                return (
                    "could not connect (\(failure.detail), errno \(failure.osErrno)); is the endpoint up? "
                        + "check 'endpoint'",
                    .io
                )
            }
        case .timeout:
            return ("timed out (\(failure.detail)); the endpoint is unreachable or too slow", .timeout)
        case .connection:
            return ("connection failed (\(failure.detail))", .io)
        case .tls where failure.detail.contains("wrong version number"):
            return (
                "TLS handshake failed (\(failure.detail)): the endpoint does not speak TLS on that port; "
                    + "check the scheme in 'endpoint' (http:// or https://)", .io
            )
        case .tls where failure.code == 35:
            return ("TLS handshake failed (\(failure.detail))", .io)
        case .tls:
            let trust =
                caFile.map { "the server's certificate is not trusted by ca-file \($0)" }
                ?? "if the server uses a private CA, point 'ca-file' at its certificate bundle (or set AWS_CA_BUNDLE)"
            return ("TLS certificate problem (\(failure.detail)); \(trust)", .io)
        case .tlsCAFile:
            return (
                "cannot load the CA certificate file \(caFile ?? "(libcurl default)") (\(failure.detail)); "
                    + "check 'ca-file'",
                .invalidConfig
            )
        case .local:
            return (failure.local?.message ?? failure.detail, failure.local?.code ?? .io)
        case .other:
            return ("request failed (curl error \(failure.code): \(failure.detail))", .io)
        }
    }
}
