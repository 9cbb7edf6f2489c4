import Testing
@Test func placeholder_ProtocolTests() { #expect(Bool(true)) }
