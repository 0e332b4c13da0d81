import Foundation

/// Tests/Fixtures/s3_fault_proxy.py in front of a SeaweedFS server, on loopback.
/// `arguments` choose the faults.
final class FaultProxy {
    let process: TestSupport.BackgroundProcess
    let port: String
    let statsPath: String

    init(_ server: SeaweedFS, dir: String, arguments: [String]) throws {
        statsPath = dir + "/stats.json"
        try? FileManager.default.removeItem(atPath: dir + "/port")
        process = try TestSupport.BackgroundProcess(
            "/usr/bin/python3",
            [
                TestSupport.packageRoot + "/Tests/Fixtures/s3_fault_proxy.py", "--upstream",
                server.endpoint.replacingOccurrences(of: "http://", with: ""), "--port-file", dir + "/port",
                "--stats", statsPath, "--seed", "1", "--log-requests",
            ] + arguments,
            logPath: dir + "/proxy.log")
        guard TestSupport.waitUntil(timeout: 10, { FileManager.default.fileExists(atPath: dir + "/port") }) else {
            throw TestFailure("the fault proxy did not start: \(process.log)")
        }
        port = try String(contentsOfFile: dir + "/port", encoding: .utf8)
    }

    var endpoint: String { "http://127.0.0.1:\(port)" }

    func stats() -> [String: Int] {
        guard let data = FileManager.default.contents(atPath: statsPath),
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Int]
        else { return [:] }
        return object
    }

    deinit { process.stop(timeout: 1) }  // it holds no state worth a graceful stop
}
