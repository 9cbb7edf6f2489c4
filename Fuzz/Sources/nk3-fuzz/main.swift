// libFuzzer entry point. Built with -sanitize=fuzzer,address and -parse-as-library; SwiftPM links an
// executable's entry as `nk3_fuzz_main`, which runs libFuzzer's driver with our callback. The harness is
// chosen by the NK3_FUZZ_TARGET environment variable; see scripts/fuzz.sh and docs/RELIABILITY.md.
import CNK3FuzzDriver
import Foundation
import NK3FuzzHarness

nonisolated(unsafe) private var selectedTarget = ""

private func fuzzOneInput(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let data = start.map { Data(bytes: $0, count: count) } ?? Data()
    NK3Fuzz.run(selectedTarget, data)
    return 0
}

@_cdecl("nk3_fuzz_main")
public func nk3FuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    guard let t = ProcessInfo.processInfo.environment["NK3_FUZZ_TARGET"], NK3Fuzz.targets.contains(t) else {
        FileHandle.standardError.write(Data("set NK3_FUZZ_TARGET to one of: \(NK3Fuzz.targets.joined(separator: ", "))\n".utf8))
        return 2
    }
    selectedTarget = t
    __lsan_disable()
    NK3Fuzz.prepare(t)
    __lsan_enable()
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv) { fuzzOneInput($0, $1) }
}
