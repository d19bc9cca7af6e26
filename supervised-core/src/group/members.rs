//! A group's members, in the order they were added, found by id and by name
//! without a scan: a group may hold a member per tenant, and adding or
//! ending one must not cost a pass over all the others. Removing one moves
//! the members after it down by one slot (one copy, no comparisons).

use std::future::Future;
use std::hash::BuildHasher;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use hashbrown::HashTable;
use smol_str::SmolStr;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::registry::{Entry, Registry};
use crate::run::{Control, Exit};
use crate::task::Task;

pub(super) struct Member {
    /// Never changes: the members are kept sorted by it.
    pub(super) id: u64,
    /// Never changes: the name index points at this member by it. Inline
    /// up to 23 bytes.
    pub(super) name: SmolStr,
    pub(super) control: Arc<Control>,
    /// The member's own token: a child of the group's token, or, in an
    /// ordered group, a token of its own that the driver cancels in order.
    pub(super) token: CancellationToken,
    pub(super) entry: Option<(Registry, Arc<Entry>)>,
    pub(super) run: Run,
    pub(super) started: Option<Instant>,
    /// Seen ready once: its later restarts do not hold up the members after
    /// it.
    pub(super) ready_once: bool,
}

/// Where a member is. The tasks and exits are boxed: a member spends most
/// of its life `Running`, and every member's slot is as large as the
/// largest variant.
pub(super) enum Run {
    /// Not started (an ordered group's later members, or members of a group
    /// task between two attempts).
    Waiting(Box<Task>),
    Running(AbortHandle),
    Ended(Box<Ended>),
    /// Taken out for a moment (while it is started).
    Moving,
}

/// How a member ended.
pub(super) struct Ended {
    pub(super) exit: Exit,
    /// The task given back, absent when its supervisor was aborted.
    pub(super) task: Option<Task>,
}

impl Run {
    pub(super) fn waiting(task: Task) -> Run {
        Run::Waiting(Box::new(task))
    }

    pub(super) fn ended(exit: Exit, task: Option<Task>) -> Run {
        Run::Ended(Box::new(Ended { exit, task }))
    }
}

/// The members in the order they were added, which is also the order of
/// their ids (each is given the next id when added), so an id is found by
/// binary search; and the ids in a table hashed by the members' names
/// (which it does not copy), with a seeded hasher, since names may come
/// from tenant data.
#[derive(Default)]
pub(super) struct Members {
    list: Vec<Member>,
    ids: HashTable<u64>,
    hasher: foldhash::fast::RandomState,
}

impl Members {
    /// Adds `member`, whose id is greater than every id held and whose name
    /// no member has.
    pub(super) fn push(&mut self, member: Member) {
        debug_assert!(self.list.last().is_none_or(|last| last.id < member.id));
        debug_assert!(!self.has_name(&member.name), "names are checked first");
        let hash = self.hasher.hash_one(member.name.as_str());
        let Members { list, ids, hasher } = self;
        ids.insert_unique(hash, member.id, |&id| hasher.hash_one(name_of(list, id)));
        list.push(member);
    }

    /// Whether a member is named `name`.
    pub(super) fn has_name(&self, name: &str) -> bool {
        self.id_of(name).is_some()
    }

    /// The id of the member named `name`.
    fn id_of(&self, name: &str) -> Option<u64> {
        let hash = self.hasher.hash_one(name);
        self.ids
            .find(hash, |&id| name_of(&self.list, id) == name)
            .copied()
    }

    /// The position of the member with `id`.
    pub(super) fn index_of(&self, id: u64) -> Option<usize> {
        self.list.binary_search_by_key(&id, |m| m.id).ok()
    }

    /// The member with `id`.
    pub(super) fn by_id(&self, id: u64) -> Option<&Member> {
        self.index_of(id).map(|i| &self.list[i])
    }

    /// The member with `id`, to change.
    pub(super) fn by_id_mut(&mut self, id: u64) -> Option<&mut Member> {
        self.index_of(id).map(|i| &mut self.list[i])
    }

    /// The member named `name`.
    pub(super) fn by_name(&self, name: &str) -> Option<&Member> {
        self.id_of(name).and_then(|id| self.by_id(id))
    }

    /// Takes the member with `id` out; the others keep their order.
    pub(super) fn remove(&mut self, id: u64) -> Option<Member> {
        let index = self.index_of(id)?;
        let hash = self.hasher.hash_one(self.list[index].name.as_str());
        if let Ok(slot) = self.ids.find_entry(hash, |&held| held == id) {
            slot.remove();
        }
        Some(self.list.remove(index))
    }
}

pin_project_lite::pin_project! {
    /// A member's supervisor, which reports the member's end to its group.
    /// A plain adapter, not an `async` block: a block awaiting the
    /// supervisor it captured would keep it twice, and this is memory
    /// every member pays for while it runs.
    pub(super) struct Reported<F> {
        #[pin]
        supervisor: F,
        // Declared after the supervisor, so dropped after it.
        report: Report,
    }
}

impl<F> Reported<F> {
    pub(super) fn new(supervisor: F, control: Arc<Control>) -> Self {
        Reported {
            supervisor,
            report: Report(Some(control)),
        }
    }
}

/// The member's link to its group, until its end is reported: one word,
/// where the group and the member's id would be two, and a word more would
/// take the member's tokio task past 512 bytes, to 640. Dropped before the
/// end was reported (the supervisor was dropped unfinished: its runtime
/// shut down, or it was aborted), it tells the group so, once the
/// supervisor has been dropped.
struct Report(Option<Arc<Control>>);

impl Drop for Report {
    fn drop(&mut self) {
        if let Some(control) = self.0.take() {
            // The id of the tokio task being dropped: the group checks it
            // against the member's current supervisor.
            if let Some(task) = tokio::task::try_id() {
                control.dropped(task);
            }
        }
    }
}

impl<F> Future for Reported<F>
where
    F: Future<Output = (Exit, Task)>,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        let (exit, task) = ready!(this.supervisor.poll(cx));
        if let Some(control) = this.report.0.take() {
            control.ended(exit, task);
        }
        Poll::Ready(())
    }
}

/// The name of the member with `id`, which `list` holds.
fn name_of(list: &[Member], id: u64) -> &str {
    let index = list
        .binary_search_by_key(&id, |m| m.id)
        .expect("the name table holds the ids of the members only");
    &list[index].name
}

/// The members in order, as a slice: reading and changing their state does
/// not touch the indexes (the id and the name of a member never change).
impl Deref for Members {
    type Target = [Member];

    fn deref(&self) -> &[Member] {
        &self.list
    }
}

impl DerefMut for Members {
    fn deref_mut(&mut self) -> &mut [Member] {
        &mut self.list
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::Membership;
    use crate::Spec;

    struct NoGroup;

    impl Membership for NoGroup {
        fn failed(&self, _: u64, _: Instant, _: &crate::Failure) {}
        fn ended(&self, _: u64, _: Exit, _: Task) {}
        fn dropped(&self, _: u64, _: tokio::task::Id) {}
    }

    fn member(id: u64, name: &str) -> Member {
        let group: Arc<dyn Membership> = Arc::new(NoGroup);
        Member {
            id,
            name: SmolStr::new(name),
            control: Arc::new(Control::new(id, Arc::downgrade(&group))),
            token: CancellationToken::new(),
            entry: None,
            run: Run::waiting(Task::new(Spec::new(name), |_ctx| async {})),
            started: None,
            ready_once: false,
        }
    }

    /// A member's tokio task runs this adapter around the supervisor; like
    /// a plain task's supervisor (`tests/footprint.rs`), it must leave the
    /// task within 512 bytes: tokio adds 104 bytes to a future and aligns a
    /// task to 128 on x86_64. Spawned inside an `async` block, it once took
    /// 1,024 bytes, and with the group and the member's id beside the
    /// supervisor, 640.
    #[test]
    fn a_members_supervisor_fits_a_512_byte_task() {
        let registry = Registry::new();
        let group: Arc<dyn Membership> = Arc::new(NoGroup);
        let control = Arc::new(Control::new(0, Arc::downgrade(&group)));
        let task = Task::new(
            Spec::new("footprint").registry(&registry),
            |ctx: crate::Context| async move { ctx.heartbeat() },
        );
        let (_, supervisor) = task.member(CancellationToken::new(), control.clone(), None);
        let Ok(supervisor) = supervisor else {
            panic!("the name is free");
        };
        let reported = Reported::new(supervisor, control);
        let size = std::mem::size_of_val(&reported);
        assert!(size <= 408, "a member's supervisor: {size} bytes");
    }

    #[test]
    fn members_are_found_by_id_and_name_after_removals() {
        let mut members = Members::default();
        for id in 0..100 {
            members.push(member(id, &format!("tenant-{id}")));
        }
        for id in (0..100).step_by(3) {
            assert_eq!(members.remove(id).map(|m| m.id), Some(id));
        }
        assert!(members.remove(0).is_none());
        assert_eq!(members.len(), 66);
        for id in 0..100 {
            let name = format!("tenant-{id}");
            let kept = id % 3 != 0;
            assert_eq!(members.has_name(&name), kept);
            assert_eq!(members.by_name(&name).map(|m| m.id), kept.then_some(id));
            assert_eq!(
                members.by_id(id).map(|m| m.name.as_str()),
                kept.then_some(name.as_str())
            );
        }
        // The order of addition is kept.
        assert!(members.windows(2).all(|w| w[0].id < w[1].id));
        // A removed name can be added again.
        members.push(member(100, "tenant-0"));
        assert_eq!(members.by_name("tenant-0").map(|m| m.id), Some(100));
    }
}
