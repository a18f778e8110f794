//! Which subscriptions an event goes to, without trying every subscription.
//!
//! Subscriptions are bucketed by folded event type (those without `includedEventTypes` in
//! a wildcard bucket), and within a bucket by subject prefix: folded prefixes for
//! case-insensitive subscriptions, raw ones for case-sensitive subscriptions, each in a
//! hash map searched once per distinct prefix length. An event visits its type's bucket
//! and the wildcard bucket, looks up each prefix length of its (folded or raw) subject, and
//! only the subscriptions found are checked for what the index does not cover (the
//! subject's suffix and the advanced filters), and only if they have such conditions.
//! Keys and advanced filters are numbered table-wide, so that while one event is routed
//! each key is looked up, and each distinct advanced filter evaluated, about once however
//! many subscriptions share it.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

use super::compiled::{CompiledFilter, LookupCache};
use super::model::{AdvancedFilter, EventFilter, FilterError};
use super::view::EventView;

/// The compiled filters of many subscriptions, indexed for routing. `K` names a
/// subscription.
#[derive(Debug)]
pub struct RoutingTable<K> {
    /// Slots are reused after removal; indexes below refer to them.
    slots: Vec<Option<Subscription<K>>>,
    free: Vec<u32>,
    by_key: HashMap<K, u32>,
    by_type: FastMap<Box<str>, Bucket>,
    any_type: Bucket,
    keys: Numbers,
    conditions: Numbers,
}

#[derive(Debug)]
struct Subscription<K> {
    key: K,
    /// Whether a match in the index must still pass [`CompiledFilter::matches_rest`]; kept
    /// beside the key so that routing reads the filter only when it has to.
    check_rest: bool,
    filter: CompiledFilter,
    /// The texts the conditions of the advanced filters are numbered by.
    conditions: Box<[Box<str>]>,
}

impl<K> Default for RoutingTable<K> {
    fn default() -> Self {
        RoutingTable {
            slots: Vec::new(),
            free: Vec::new(),
            by_key: HashMap::new(),
            by_type: FastMap::default(),
            any_type: Bucket::default(),
            keys: Numbers::default(),
            conditions: Numbers::default(),
        }
    }
}

impl<K: Clone + Eq + Hash + Ord> RoutingTable<K> {
    pub fn new() -> Self {
        RoutingTable::default()
    }

    /// Compiles `filter` and adds it under `key`, replacing the filter `key` had. If the
    /// filter is invalid the table is left as it was.
    pub fn insert(&mut self, key: K, filter: &EventFilter) -> Result<(), FilterError> {
        let mut compiled = CompiledFilter::new(filter)?;
        self.remove(&key);
        let arrays = filter.enable_advanced_filtering_on_arrays;
        let conditions: Box<[Box<str>]> = filter
            .advanced_filters
            .iter()
            .map(|advanced| condition_text(advanced, arrays))
            .collect();
        let ids: Vec<(u32, u32)> = filter
            .advanced_filters
            .iter()
            .zip(&conditions)
            .map(|(advanced, condition)| (self.keys.acquire(&advanced.key), self.conditions.acquire(condition)))
            .collect();
        compiled.set_ids(ids);
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(None);
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 subscriptions")
            }
        };
        self.by_key.insert(key.clone(), slot);
        self.slots[slot as usize] = Some(Subscription {
            key,
            check_rest: compiled.has_rest(),
            filter: compiled,
            conditions,
        });
        let subscription = self.slots[slot as usize].as_ref().expect("just stored");
        let key_of = |slot: u32| {
            &self.slots[slot as usize]
                .as_ref()
                .expect("indexed slots are occupied")
                .key
        };
        match subscription.filter.event_types() {
            None => self.any_type.add(slot, &subscription.filter, key_of),
            Some(types) => {
                for event_type in types {
                    let bucket = self.by_type.entry(event_type.clone()).or_default();
                    bucket.add(slot, &subscription.filter, key_of);
                }
            }
        }
        Ok(())
    }

    /// Removes the subscription `key`; false if there was none.
    pub fn remove(&mut self, key: &K) -> bool {
        let Some(slot) = self.by_key.remove(key) else {
            return false;
        };
        let subscription = self.slots[slot as usize].take().expect("indexed slots are occupied");
        let filter = &subscription.filter;
        for (key, condition) in filter.keys().zip(&subscription.conditions) {
            self.keys.release(key);
            self.conditions.release(condition);
        }
        match filter.event_types() {
            None => self.any_type.remove(slot, filter),
            Some(types) => {
                for event_type in types {
                    let bucket = self.by_type.get_mut(event_type).expect("the type's bucket exists");
                    bucket.remove(slot, filter);
                    if bucket.is_empty() {
                        self.by_type.remove(event_type);
                    }
                }
            }
        }
        self.free.push(slot);
        true
    }

    /// Appends the keys of the subscriptions whose filter `event` matches to `out`, sorted,
    /// each once. Allocates nothing but room in `out` (and, past a thousand or so matches,
    /// the sort's buffer).
    pub fn route(&self, event: &EventView<'_>, out: &mut Vec<K>) {
        let start = out.len();
        let mut cache = LookupCache::new();
        let mut check = |slot: u32| {
            let subscription = self.slots[slot as usize].as_ref().expect("indexed slots are occupied");
            if !subscription.check_rest || subscription.filter.matches_rest(event, &mut cache) {
                out.push(subscription.key.clone());
            }
        };
        if let Some(bucket) = self.by_type.get(event.folded_event_type()) {
            bucket.visit(event, &mut check);
        }
        self.any_type.visit(event, &mut check);
        // Mostly two sorted runs (the unprefixed subscriptions of the type and of every
        // type) and a few others: the stable sort merges runs in linear time.
        out[start..].sort();
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

/// The subscriptions of one event type (or of every type), by subject prefix.
#[derive(Debug, Default)]
struct Bucket {
    /// Sorted by key, so that routing appends them as one sorted run.
    no_prefix: Vec<u32>,
    folded_prefix: PrefixIndex,
    exact_prefix: PrefixIndex,
}

impl Bucket {
    fn add<'k, K: Ord + 'k>(&mut self, slot: u32, filter: &CompiledFilter, key_of: impl Fn(u32) -> &'k K) {
        match filter.subject_begins_with() {
            None => {
                let key = key_of(slot);
                let at = self.no_prefix.partition_point(|other| key_of(*other) < key);
                self.no_prefix.insert(at, slot);
            }
            Some(prefix) if filter.is_subject_case_sensitive() => self.exact_prefix.insert(prefix, slot),
            Some(prefix) => self.folded_prefix.insert(prefix, slot),
        }
    }

    fn remove(&mut self, slot: u32, filter: &CompiledFilter) {
        match filter.subject_begins_with() {
            None => {
                let at = self
                    .no_prefix
                    .iter()
                    .position(|s| *s == slot)
                    .expect("the slot is indexed here");
                self.no_prefix.remove(at);
            }
            Some(prefix) if filter.is_subject_case_sensitive() => self.exact_prefix.remove(prefix, slot),
            Some(prefix) => self.folded_prefix.remove(prefix, slot),
        }
    }

    fn is_empty(&self) -> bool {
        self.no_prefix.is_empty() && self.folded_prefix.is_empty() && self.exact_prefix.is_empty()
    }

    /// Calls `f` with every subscription whose type and subject prefix the event matches.
    fn visit(&self, event: &EventView<'_>, f: &mut impl FnMut(u32)) {
        self.no_prefix.iter().copied().for_each(&mut *f);
        self.folded_prefix.visit(event.folded_subject(), f);
        self.exact_prefix.visit(event.subject(), f);
    }
}

/// Subscriptions by (non-empty) subject prefix. A subject is looked up once per distinct
/// prefix length, cut to that length: few lookups, as prefixes of one kind of resource
/// tend to have few lengths, and none longer than the subject.
#[derive(Debug, Default)]
struct PrefixIndex {
    by_prefix: FastMap<Box<[u8]>, Vec<u32>>,
    /// The distinct lengths of the prefixes, ascending, each with how many prefixes have it.
    lengths: Vec<(usize, usize)>,
}

impl PrefixIndex {
    fn insert(&mut self, prefix: &str, slot: u32) {
        let slots = self.by_prefix.entry(prefix.as_bytes().into()).or_default();
        if slots.is_empty() {
            match self.lengths.binary_search_by_key(&prefix.len(), |(len, _)| *len) {
                Ok(i) => self.lengths[i].1 += 1,
                Err(i) => self.lengths.insert(i, (prefix.len(), 1)),
            }
        }
        slots.push(slot);
    }

    fn remove(&mut self, prefix: &str, slot: u32) {
        let slots = self
            .by_prefix
            .get_mut(prefix.as_bytes())
            .expect("the prefix is indexed");
        remove_slot(slots, slot);
        if slots.is_empty() {
            self.by_prefix.remove(prefix.as_bytes());
            let i = self
                .lengths
                .binary_search_by_key(&prefix.len(), |(len, _)| *len)
                .expect("the length is counted");
            self.lengths[i].1 -= 1;
            if self.lengths[i].1 == 0 {
                self.lengths.remove(i);
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.by_prefix.is_empty()
    }

    /// Calls `f` with the subscriptions of every prefix of `subject`.
    fn visit(&self, subject: &str, f: &mut impl FnMut(u32)) {
        let subject = subject.as_bytes();
        for &(len, _) in self.lengths.iter().take_while(|(len, _)| *len <= subject.len()) {
            if let Some(slots) = self.by_prefix.get(&subject[..len]) {
                slots.iter().copied().for_each(&mut *f);
            }
        }
    }
}

/// An advanced filter as text: two filters with one text give one result on any event.
fn condition_text(filter: &AdvancedFilter, arrays: bool) -> Box<str> {
    let json = serde_json::to_string(filter).expect("filters serialise");
    format!("{arrays} {json}").into()
}

/// Numbers for distinct texts (keys of advanced filters, or conditions), counted so that
/// a number is freed, and reused, with the last filter that has it.
#[derive(Debug, Default)]
struct Numbers {
    by_key: FastMap<Box<str>, (u32, usize)>,
    free: Vec<u32>,
}

impl Numbers {
    fn acquire(&mut self, key: &str) -> u32 {
        if let Some((id, count)) = self.by_key.get_mut(key) {
            *count += 1;
            return *id;
        }
        let id = self
            .free
            .pop()
            .unwrap_or_else(|| u32::try_from(self.by_key.len()).expect("fewer than 2^32 keys"));
        self.by_key.insert(key.into(), (id, 1));
        id
    }

    fn release(&mut self, key: &str) {
        let (id, count) = self.by_key.get_mut(key).expect("the key was numbered");
        *count -= 1;
        if *count == 0 {
            self.free.push(*id);
            self.by_key.remove(key);
        }
    }
}

/// A hash map with [`FastHasher`].
type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// The FxHash of rustc, for the event-type and prefix maps that routing reads several
/// times per event, where SipHash took a tenth of the time. It does not resist crafted
/// collisions, which would buy nothing here: the keys are event types and prefixes chosen
/// by subscribers, who can already make every event visit each of their subscriptions.
#[derive(Default)]
struct FastHasher(u64);

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            self.add(u64::from_le_bytes(word.try_into().expect("eight bytes")));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut word = [0; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn finish(&self) -> u64 {
        // The multiply leaves the low bits weakest; the table picks buckets with them.
        self.0.rotate_left(26)
    }
}

fn remove_slot(slots: &mut Vec<u32>, slot: u32) {
    let index = slots.iter().position(|s| *s == slot).expect("the slot is indexed here");
    slots.swap_remove(index);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventSchema;
    use serde_json::{Value, json};

    fn filter(json: Value) -> EventFilter {
        serde_json::from_value(json).unwrap()
    }

    fn event(event_type: &str, subject: &str, data: Value) -> Value {
        json!({"eventType": event_type, "subject": subject, "data": data})
    }

    fn route<K: Clone + Eq + Hash + Ord>(table: &RoutingTable<K>, event: &Value) -> Vec<K> {
        let mut out = Vec::new();
        table.route(&EventView::new(EventSchema::EventGridSchema, event), &mut out);
        out
    }

    impl<K: Clone + Eq + Hash + Ord> RoutingTable<K> {
        /// How many subscriptions the index hands to the remaining checks.
        fn candidates(&self, event: &EventView<'_>) -> usize {
            let mut count = 0;
            if let Some(bucket) = self.by_type.get(event.folded_event_type()) {
                bucket.visit(event, &mut |_| count += 1);
            }
            self.any_type.visit(event, &mut |_| count += 1);
            count
        }
    }

    #[test]
    fn routes_by_type_prefix_suffix_and_advanced_filters_in_key_order() {
        let mut table = RoutingTable::new();
        table.insert(9, &filter(json!({}))).unwrap();
        table
            .insert(1, &filter(json!({"includedEventTypes": ["A", "b"]})))
            .unwrap();
        table
            .insert(5, &filter(json!({"subjectBeginsWith": "models/"})))
            .unwrap();
        table
            .insert(
                3,
                &filter(json!({"subjectBeginsWith": "Models/", "isSubjectCaseSensitive": true})),
            )
            .unwrap();
        table
            .insert(
                4,
                &filter(json!({"includedEventTypes": ["a"], "subjectEndsWith": ":3"})),
            )
            .unwrap();
        table
            .insert(
                2,
                &filter(
                    json!({"advancedFilters": [{"operatorType": "NumberGreaterThan", "key": "data.n", "value": 1}]}),
                ),
            )
            .unwrap();
        assert_eq!(table.len(), 6);

        assert_eq!(
            route(&table, &event("a", "Models/x:3", json!({"n": 2}))),
            [1, 2, 3, 4, 5, 9]
        );
        assert_eq!(route(&table, &event("B", "models/x:4", json!({"n": 0}))), [1, 5, 9]);
        assert_eq!(route(&table, &event("c", "other", json!({}))), [9]);

        let mut out = vec![100];
        table.route(
            &EventView::new(EventSchema::EventGridSchema, &event("c", "", json!({}))),
            &mut out,
        );
        assert_eq!(out, [100, 9], "route appends");
    }

    #[test]
    fn insert_replaces_and_remove_forgets() {
        let mut table = RoutingTable::new();
        table
            .insert("s", &filter(json!({"includedEventTypes": ["a"]})))
            .unwrap();
        table
            .insert("s", &filter(json!({"includedEventTypes": ["b"]})))
            .unwrap();
        assert_eq!(table.len(), 1);
        assert!(route(&table, &event("a", "", json!({}))).is_empty());
        assert_eq!(route(&table, &event("b", "", json!({}))), ["s"]);

        let invalid = filter(json!({"includedEventTypes": []}));
        assert_eq!(table.insert("s", &invalid).unwrap_err(), FilterError::NoEventTypes);
        assert_eq!(
            route(&table, &event("b", "", json!({}))),
            ["s"],
            "a refused filter changes nothing"
        );

        assert!(table.remove(&"s"));
        assert!(!table.remove(&"s"));
        assert!(table.is_empty());
        assert!(table.by_type.is_empty() && table.any_type.is_empty());
    }

    #[test]
    fn duplicate_types_and_all_deliver_once() {
        let mut table = RoutingTable::new();
        table
            .insert(1, &filter(json!({"includedEventTypes": ["a", "A"]})))
            .unwrap();
        table
            .insert(2, &filter(json!({"includedEventTypes": ["a", "All"]})))
            .unwrap();
        assert_eq!(route(&table, &event("a", "", json!({}))), [1, 2]);
        assert_eq!(route(&table, &event("z", "", json!({}))), [2]);
    }

    #[test]
    fn only_subscriptions_of_the_type_and_prefix_are_checked() {
        let mut table = RoutingTable::new();
        for i in 0..1000 {
            let f = filter(json!({
                "includedEventTypes": [format!("type-{}", i % 10)],
                "subjectBeginsWith": format!("models/m{i}:"),
                "subjectEndsWith": ":1"
            }));
            table.insert(i, &f).unwrap();
        }
        let e = event("TYPE-7", "Models/M17:1", json!({}));
        let view = EventView::new(EventSchema::EventGridSchema, &e);
        assert_eq!(table.candidates(&view), 1);
        assert_eq!(route(&table, &e), [17]);
        let e = event("type-7", "models/m1:1", json!({}));
        assert_eq!(table.candidates(&EventView::new(EventSchema::EventGridSchema, &e)), 0);
    }

    #[test]
    fn shared_keys_and_conditions_share_numbers_until_the_last_goes() {
        let on = |op: &str, key: &str| {
            filter(json!({"advancedFilters": [{"operatorType": op, "key": key, "values": ["a"]}]}))
        };
        let mut table = RoutingTable::new();
        table.insert(1, &on("StringIn", "data.k")).unwrap();
        table.insert(2, &on("StringIn", "data.k")).unwrap();
        table.insert(3, &on("StringNotIn", "data.k")).unwrap();
        table.insert(4, &on("StringIn", "data.other")).unwrap();
        assert_eq!((table.keys.by_key.len(), table.conditions.by_key.len()), (2, 3));
        assert_eq!(route(&table, &event("t", "", json!({"k": "A"}))), [1, 2]);
        assert_eq!(route(&table, &event("t", "", json!({"k": "b", "other": "a"}))), [3, 4]);

        table.remove(&1);
        assert_eq!(table.conditions.by_key.len(), 3, "2 still has the condition");
        table.remove(&2);
        table.remove(&4);
        assert_eq!((table.keys.by_key.len(), table.conditions.by_key.len()), (1, 1));
        // Freed numbers are reused.
        table.insert(5, &on("StringContains", "data.new")).unwrap();
        let mut ids: Vec<u32> = table.keys.by_key.values().map(|(id, _)| *id).collect();
        ids.sort();
        assert_eq!(ids, [0, 1]);
        assert_eq!(route(&table, &event("t", "", json!({"k": "b", "new": "xax"}))), [3, 5]);
    }

    #[test]
    fn prefixes_of_every_length_are_found_and_forgotten() {
        let mut table = RoutingTable::new();
        let prefixes = ["m", "models/", "models/a", "models/a:1", "models/b", "x"];
        for (i, prefix) in prefixes.iter().enumerate() {
            table.insert(i, &filter(json!({"subjectBeginsWith": prefix}))).unwrap();
        }
        table
            .insert(9, &filter(json!({"subjectBeginsWith": "models/a"})))
            .unwrap();
        assert_eq!(table.any_type.folded_prefix.lengths, [(1, 2), (7, 1), (8, 2), (10, 1)]);
        assert_eq!(route(&table, &event("t", "MODELS/A:1", json!({}))), [0, 1, 2, 3, 9]);
        assert_eq!(route(&table, &event("t", "models/a", json!({}))), [0, 1, 2, 9]);
        assert!(route(&table, &event("t", "", json!({}))).is_empty());

        table.remove(&2);
        assert_eq!(table.any_type.folded_prefix.lengths, [(1, 2), (7, 1), (8, 2), (10, 1)]);
        table.remove(&9);
        table.remove(&4);
        assert_eq!(table.any_type.folded_prefix.lengths, [(1, 2), (7, 1), (10, 1)]);
        for i in [0, 1, 3, 5] {
            table.remove(&i);
        }
        assert!(table.any_type.is_empty());
        assert!(table.any_type.folded_prefix.lengths.is_empty());
    }
}
