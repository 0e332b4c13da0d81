import Testing
@testable import VFSReplication

@Test func errorCarriesMessage() {
    let e = ReplicationError(.fenced, "database x: fenced")
    #expect(e.description == "database x: fenced")
}
