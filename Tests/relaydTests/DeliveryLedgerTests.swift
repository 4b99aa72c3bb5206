import Testing

@testable import Relay
@testable import relayd

/// The overwrite-mode verdicts of ``DeliveryLedger``, driven directly (no channel attached: the
/// consumed count the writer side sees is 0).
@Suite("Delivery ledger, overwrite mode")
struct DeliveryLedgerTests {
    private func deliver(_ ledger: DeliveryLedger, _ sequences: Range<UInt64>, records: Int = 10) {
        for sequence in sequences {
            ledger.delivered(SubbufferDelivery(buffer: 0, sequence: sequence, records: records, contentSize: records * 100, padding: 0))
        }
    }

    @Test("a reused sub-buffer is written if released unreported, lost if reported or a buffer's worth ahead; never twice")
    func verdicts() {
        let ledger = DeliveryLedger(subbufferCount: 2, overwriteMode: true)
        self.deliver(ledger, 0..<5)
        ledger.started(sequence: 2)  // reuses 0: within a buffer's worth of consumed (0), undecided
        ledger.started(sequence: 3)  // reuses 1: undecided
        ledger.started(sequence: 4)  // reuses 2: a buffer's worth ahead of consumed, never taken: lost now
        var totals = ledger.account(consumed: 0) { _ in }
        #expect(totals.overwrittenRecords == 10, "only sub-buffer 2 is certainly lost yet")
        #expect(totals.writtenRecords == 0)
        // The shipper passes 1 unread (its copy was not intact), and reports 2 as well, already counted.
        ledger.skippedOverwritten(sequences: 1..<3)
        totals = ledger.account(consumed: 0) { _ in }
        #expect(totals.overwrittenRecords == 20, "1 counted once, 2 not again")
        // Released through 3: 0 went out unreported (shipped from its copy), 1 and 2 were lost.
        totals = ledger.account(consumed: 3) { _ in }
        #expect(totals.writtenRecords == 10, "sub-buffer 0 is written")
        #expect(totals.overwrittenRecords == 20)
        // A report of sub-buffers already settled (below the consumed count accounted) changes nothing,
        // whether they were lost (1, 2) or written (0).
        ledger.skippedOverwritten(sequences: 0..<3)
        totals = ledger.account(consumed: 5) { _ in }
        #expect(totals.overwrittenRecords == 20)
        #expect(totals.writtenRecords == 30, "3 and 4 are written too")
    }
}
