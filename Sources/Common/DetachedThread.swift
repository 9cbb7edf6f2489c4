#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A detached OS thread for a blocking loop (a pipe reader, a blocking socket read), without Foundation's
/// `Thread`: the agent links only FoundationEssentials, which has none.
public enum DetachedThread {
    private final class Body: Sendable {
        let name: String
        let run: @Sendable () -> Void
        init(name: String, run: @escaping @Sendable () -> Void) {
            self.name = name
            self.run = run
        }
    }

    typealias SetName = @convention(c) (pthread_t, UnsafePointer<CChar>) -> Int32

    /// glibc's `pthread_setname_np`, which Swift does not import (it needs `_GNU_SOURCE`); looked up once.
    static let setName: SetName? = {
        guard let sym = dlsym(nil, "pthread_setname_np") else { return nil }
        return unsafeBitCast(sym, to: SetName.self)
    }()

    /// Starts `body` on a new detached thread named `name` (cut to the 15 bytes Linux keeps).
    /// Falls back to running `body` on the caller's thread if no thread can be created.
    public static func start(name: String, _ body: @escaping @Sendable () -> Void) {
        let context = Unmanaged.passRetained(Body(name: name, run: body)).toOpaque()
        var attr = pthread_attr_t()
        pthread_attr_init(&attr)
        defer { pthread_attr_destroy(&attr) }
        pthread_attr_setdetachstate(&attr, Int32(PTHREAD_CREATE_DETACHED))
        var thread = pthread_t()
        let rc = pthread_create(&thread, &attr, { raw in
            let body = Unmanaged<Body>.fromOpaque(raw!).takeRetainedValue()
            if let setName = DetachedThread.setName {
                _ = setName(pthread_self(), String(decoding: body.name.utf8.prefix(15), as: UTF8.self))
            }
            body.run()
            return nil
        }, context)
        if rc != 0 {
            let body = Unmanaged<Body>.fromOpaque(context).takeRetainedValue()
            body.run()
        }
    }
}
