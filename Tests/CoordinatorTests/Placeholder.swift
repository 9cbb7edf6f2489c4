import Testing
@Test func placeholder_CoordinatorTests() { #expect(Bool(true)) }
