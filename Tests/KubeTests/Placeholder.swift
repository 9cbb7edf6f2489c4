import Testing
@Test func placeholder_KubeTests() { #expect(Bool(true)) }
