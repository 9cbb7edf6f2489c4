import Testing
@Test func placeholder_AgentTests() { #expect(Bool(true)) }
