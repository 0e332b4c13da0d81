/// Whether one LTX file may follow another in a chain (a restore, a merge): the rules that keep
/// a file of another database, or of another history of this one, out of it.
///
/// - A file that starts right after its predecessor (min TXID = previous max + 1) and carries a
///   pre-apply checksum must expect exactly the predecessor's post-apply checksum, when that one
///   carries it too.
/// - The node id (our lineage id: the writer of the database's state file) must be the
///   predecessor's, with one legitimate change: a database rebuilt from the replica and written
///   on continues its lineage under a new writer id, and its first file's pre-apply checksum is
///   the restored state's; so a different node id is accepted exactly when that checksum proves
///   the continuation. A snapshot starts a new lineage and is never checked against what came
///   before (it is always first in a chain); a compacted file carries its last input's node id
///   and its first input's pre-apply checksum, so it obeys the same rules.
/// - Litestream's files carry node id 0 and no checksums: all of one chain, nothing to compare.
enum LTXChain {
    /// Nil when `next` may follow `previous` (whose post-apply checksum, if any, is `previousPost`),
    /// else why not.
    static func problem(previous: LTXHeader, previousPost: UInt64?, next: LTXHeader) -> String? {
        let adjacent = next.minTXID == previous.maxTXID &+ 1
        let nextPre = next.expectedPreApplyChecksum
        if adjacent, let pre = nextPre, let post = previousPost, pre != post {
            return "its pre-apply database checksum \(hex16(pre)) is not the post-apply checksum \(hex16(post)) "
                + "of the file before it: it was written on top of another state (another database or history)"
        }
        if next.nodeID != previous.nodeID {
            let proven = adjacent && nextPre != nil && previousPost != nil
            if !proven {
                return "it belongs to another lineage (node id \(hex16(next.nodeID)); the file before it has "
                    + "\(hex16(previous.nodeID))), and no database checksum shows that it continues that file"
            }
        }
        return nil
    }
}
