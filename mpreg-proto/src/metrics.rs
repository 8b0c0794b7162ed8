//! Counters of everything the node did, for tests, simulations and
//! operators. Plain numbers: reading them costs nothing.

use crate::wire::MessageKind;

/// Why a frame was rejected.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
#[allow(missing_docs)]
pub enum RejectReason {
    TooLarge,
    TooShort,
    BadMagic,
    UnsupportedVersion,
    UnsupportedFlags,
    WrongCluster,
    /// Unknown message kind: skipped (a newer peer), not an error.
    UnknownKind,
    Malformed,
    RateLimited,
    IncompatibleVersion,
    NotAllowed,
    Left,
    /// From a peer not (yet) admitted, or refused by the admission policy.
    NotAdmitted,
}

impl RejectReason {
    /// Every reason.
    pub const ALL: [RejectReason; 13] = [
        RejectReason::TooLarge,
        RejectReason::TooShort,
        RejectReason::BadMagic,
        RejectReason::UnsupportedVersion,
        RejectReason::UnsupportedFlags,
        RejectReason::WrongCluster,
        RejectReason::UnknownKind,
        RejectReason::Malformed,
        RejectReason::RateLimited,
        RejectReason::IncompatibleVersion,
        RejectReason::NotAllowed,
        RejectReason::Left,
        RejectReason::NotAdmitted,
    ];
}

/// A configured cap that was reached.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
#[allow(missing_docs)]
pub enum Limit {
    FrameSize,
    Members,
    FunctionsPerNode,
    CatalogEntries,
    PendingCalls,
    Invocations,
    DedupEntries,
    /// Remembered call outcomes reached `max_dedup_bytes`: the oldest were
    /// forgotten early.
    DedupBytes,
    /// `connections.max_connections` reached: an accepted connection was
    /// refused, or a quiet one closed to make room for a dial.
    Connections,
    /// Frames held for an opening connection reached
    /// `connections.max_held_bytes`.
    HeldBytes,
    MissingUpdates,
    QueuedTransmits,
    /// A peer sent faster than `peer_frames_per_sec` (beyond the burst).
    PeerRate,
    /// Lazy announcements queued for one peer reached
    /// `max_pending_announcements`: they left at once.
    Announcements,
    /// An anti-entropy (or graft) answer filled `sync_pages_per_exchange`
    /// pages of `sync_page_bytes`: the rest waits for the next exchange.
    SyncPages,
}

impl Limit {
    /// Every limit.
    pub const ALL: [Limit; 15] = [
        Limit::FrameSize,
        Limit::Members,
        Limit::FunctionsPerNode,
        Limit::CatalogEntries,
        Limit::PendingCalls,
        Limit::Invocations,
        Limit::DedupEntries,
        Limit::DedupBytes,
        Limit::Connections,
        Limit::HeldBytes,
        Limit::MissingUpdates,
        Limit::QueuedTransmits,
        Limit::PeerRate,
        Limit::Announcements,
        Limit::SyncPages,
    ];
}

/// One counter per message kind; index with [`MessageKind::index`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PerKind(pub [u64; MessageKind::COUNT]);

impl Default for PerKind {
    fn default() -> Self {
        PerKind([0; MessageKind::COUNT])
    }
}

impl std::ops::Deref for PerKind {
    type Target = [u64; MessageKind::COUNT];
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for PerKind {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

/// Counters since the node was created.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metrics {
    /// Frames received, by kind (index with [`MessageKind::index`]).
    pub frames_in: PerKind,
    /// Bytes received, by kind.
    pub bytes_in: PerKind,
    /// Frames sent, by kind.
    pub frames_out: PerKind,
    /// Bytes sent, by kind.
    pub bytes_out: PerKind,
    /// Rejected frames, by reason (index as [`RejectReason::ALL`]).
    pub rejected: [u64; RejectReason::ALL.len()],
    /// Times each limit was hit (index as [`Limit::ALL`]).
    pub limits_hit: [u64; Limit::ALL.len()],
    /// Direct probes sent.
    pub probes: u64,
    /// Direct probes that timed out.
    pub probe_timeouts: u64,
    /// Indirect probe requests sent.
    pub indirect_probes: u64,
    /// Suspicions this node raised.
    pub suspicions: u64,
    /// Times this node refuted a suspicion (or death) of itself.
    pub refutations: u64,
    /// Members this node declared Dead.
    pub deaths_declared: u64,
    /// Updates this node originated.
    pub broadcasts_originated: u64,
    /// Updates received and relayed onward.
    pub broadcasts_relayed: u64,
    /// Payload copies sent eagerly (update × peer).
    pub broadcast_copies: u64,
    /// Update payloads sent in any frame (eager, graft answers, anti-entropy).
    pub updates_sent: u64,
    /// Updates received that were already known.
    pub duplicate_updates: u64,
    /// Update ids announced lazily.
    pub ihaves: u64,
    /// Grafts sent.
    pub grafts: u64,
    /// Prunes sent.
    pub prunes: u64,
    /// Anti-entropy exchanges started.
    pub sync_exchanges: u64,
    /// Anti-entropy bytes sent and received.
    pub sync_bytes: u64,
    /// Updates received by anti-entropy that were new.
    pub sync_updates_applied: u64,
    /// Calls started here (by the application or for a client).
    pub calls: u64,
    /// Calls completed with a result.
    pub calls_ok: u64,
    /// Calls completed with an error.
    pub calls_failed: u64,
    /// Idempotent calls re-sent to another provider.
    pub calls_retried: u64,
    /// Calls sent again to the same provider after their connection broke.
    pub calls_resent: u64,
    /// Calls forwarded for others (towards or from another cluster).
    pub calls_relayed: u64,
    /// Handlers started on this node.
    pub invocations: u64,
    /// Duplicate call requests answered from memory instead of re-running.
    pub invocations_deduplicated: u64,
    /// Dials ordered.
    pub dials: u64,
    /// Dials that failed or timed out.
    pub dial_failures: u64,
    /// Connections opened (dialled or accepted).
    pub connections_opened: u64,
    /// Connections accepted.
    pub connections_accepted: u64,
    /// Accepted connections refused (at the cap, or leaving).
    pub connections_refused: u64,
    /// Connections closed for being idle (duplicates included).
    pub connections_idle_closed: u64,
    /// Connections that broke (closed with frames lost).
    pub connections_lost: u64,
    /// Peers admitted by this node's policy.
    pub peers_admitted: u64,
    /// Peers this node's policy refused.
    pub peers_refused: u64,
    /// Times a peer's policy refused this node.
    pub refused_by_peers: u64,
    /// Handlers cancelled because their call's budget ran out.
    pub invocations_timed_out: u64,
}

impl Metrics {
    /// Frames sent in total.
    pub fn total_frames_out(&self) -> u64 {
        self.frames_out.iter().sum()
    }

    /// Bytes sent in total.
    pub fn total_bytes_out(&self) -> u64 {
        self.bytes_out.iter().sum()
    }

    /// Frames of one kind received.
    pub fn frames_in_of(&self, kind: MessageKind) -> u64 {
        self.frames_in[kind.index()]
    }

    /// Frames of one kind sent.
    pub fn frames_out_of(&self, kind: MessageKind) -> u64 {
        self.frames_out[kind.index()]
    }

    /// Rejections for one reason.
    pub fn rejected_for(&self, reason: RejectReason) -> u64 {
        self.rejected[reason as usize]
    }

    /// Hits of one limit.
    pub fn limit_hits(&self, limit: Limit) -> u64 {
        self.limits_hit[limit as usize]
    }
}
