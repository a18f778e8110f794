//! Which subscriptions an event goes to, without trying every subscription.
//!
//! Subscriptions are bucketed by folded event type (those without `includedEventTypes` in
//! a wildcard bucket), and within a bucket by subject prefix in two byte tries: folded
//! prefixes for case-insensitive subscriptions, raw ones for case-sensitive subscriptions.
//! An event visits its type's bucket and the wildcard bucket, walks each trie along its
//! (folded or raw) subject, and only the subscriptions met on the way are checked for what
//! the index does not cover: the subject's suffix and the advanced filters.

use std::collections::HashMap;
use std::hash::Hash;

use super::compiled::CompiledFilter;
use super::model::{EventFilter, FilterError};
use super::view::EventView;

/// The compiled filters of many subscriptions, indexed for routing. `K` names a
/// subscription.
#[derive(Debug)]
pub struct RoutingTable<K> {
    /// Slots are reused after removal; indexes below refer to them.
    slots: Vec<Option<Subscription<K>>>,
    free: Vec<u32>,
    by_key: HashMap<K, u32>,
    by_type: HashMap<Box<str>, Bucket>,
    any_type: Bucket,
}

#[derive(Debug)]
struct Subscription<K> {
    key: K,
    filter: CompiledFilter,
}

impl<K> Default for RoutingTable<K> {
    fn default() -> Self {
        RoutingTable {
            slots: Vec::new(),
            free: Vec::new(),
            by_key: HashMap::new(),
            by_type: HashMap::new(),
            any_type: Bucket::default(),
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
        let filter = CompiledFilter::new(filter)?;
        self.remove(&key);
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(None);
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 subscriptions")
            }
        };
        match filter.event_types() {
            None => self.any_type.add(slot, &filter),
            Some(types) => {
                for event_type in types {
                    self.by_type.entry(event_type.clone()).or_default().add(slot, &filter);
                }
            }
        }
        self.by_key.insert(key.clone(), slot);
        self.slots[slot as usize] = Some(Subscription { key, filter });
        Ok(())
    }

    /// Removes the subscription `key`; false if there was none.
    pub fn remove(&mut self, key: &K) -> bool {
        let Some(slot) = self.by_key.remove(key) else {
            return false;
        };
        let subscription = self.slots[slot as usize].take().expect("indexed slots are occupied");
        let filter = &subscription.filter;
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
    /// each once. Allocates nothing but room in `out`.
    pub fn route(&self, event: &EventView<'_>, out: &mut Vec<K>) {
        let start = out.len();
        let mut check = |slot: u32| {
            let subscription = self.slots[slot as usize].as_ref().expect("indexed slots are occupied");
            if subscription.filter.matches_rest(event) {
                out.push(subscription.key.clone());
            }
        };
        if let Some(bucket) = self.by_type.get(event.folded_event_type()) {
            bucket.visit(event, &mut check);
        }
        self.any_type.visit(event, &mut check);
        out[start..].sort_unstable();
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
    no_prefix: Vec<u32>,
    folded_prefix: PrefixTrie,
    exact_prefix: PrefixTrie,
}

impl Bucket {
    fn add(&mut self, slot: u32, filter: &CompiledFilter) {
        match filter.subject_begins_with() {
            None => self.no_prefix.push(slot),
            Some(prefix) if filter.is_subject_case_sensitive() => self.exact_prefix.insert(prefix.as_bytes(), slot),
            Some(prefix) => self.folded_prefix.insert(prefix.as_bytes(), slot),
        }
    }

    fn remove(&mut self, slot: u32, filter: &CompiledFilter) {
        match filter.subject_begins_with() {
            None => remove_slot(&mut self.no_prefix, slot),
            Some(prefix) if filter.is_subject_case_sensitive() => self.exact_prefix.remove(prefix.as_bytes(), slot),
            Some(prefix) => self.folded_prefix.remove(prefix.as_bytes(), slot),
        }
    }

    fn is_empty(&self) -> bool {
        self.no_prefix.is_empty() && self.folded_prefix.is_empty() && self.exact_prefix.is_empty()
    }

    /// Calls `f` with every subscription whose type and subject prefix the event matches.
    fn visit(&self, event: &EventView<'_>, f: &mut impl FnMut(u32)) {
        self.no_prefix.iter().copied().for_each(&mut *f);
        self.folded_prefix.visit(event.folded_subject().as_bytes(), f);
        self.exact_prefix.visit(event.subject().as_bytes(), f);
    }
}

/// A byte trie of non-empty prefixes; each node holds the subscriptions whose prefix ends
/// there. Nodes live in one vector and are reused once pruned.
#[derive(Debug, Default)]
struct PrefixTrie {
    /// `nodes[0]` is the root once anything was inserted.
    nodes: Vec<TrieNode>,
    free: Vec<u32>,
}

#[derive(Debug, Default)]
struct TrieNode {
    /// Sorted by byte.
    children: Vec<(u8, u32)>,
    slots: Vec<u32>,
}

impl PrefixTrie {
    fn insert(&mut self, prefix: &[u8], slot: u32) {
        if self.nodes.is_empty() {
            self.nodes.push(TrieNode::default());
        }
        let mut node = 0;
        for &byte in prefix {
            node = match self.child(node, byte) {
                Ok(child) => child,
                Err(position) => {
                    let child = self.new_node();
                    self.nodes[node as usize].children.insert(position, (byte, child));
                    child
                }
            };
        }
        self.nodes[node as usize].slots.push(slot);
    }

    fn remove(&mut self, prefix: &[u8], slot: u32) {
        let mut path = Vec::with_capacity(prefix.len());
        let mut node = 0;
        for &byte in prefix {
            path.push(node);
            node = self.child(node, byte).expect("the prefix was inserted");
        }
        remove_slot(&mut self.nodes[node as usize].slots, slot);
        // Prune the nodes that lead nowhere any more, from the leaf up.
        for (&parent, &byte) in path.iter().zip(prefix).rev() {
            let TrieNode { children, slots } = &self.nodes[node as usize];
            if !children.is_empty() || !slots.is_empty() {
                break;
            }
            let siblings = &mut self.nodes[parent as usize].children;
            let index = siblings
                .binary_search_by_key(&byte, |(b, _)| *b)
                .expect("the child exists");
            siblings.remove(index);
            self.free.push(node);
            node = parent;
        }
    }

    fn is_empty(&self) -> bool {
        self.nodes
            .first()
            .is_none_or(|root| root.children.is_empty() && root.slots.is_empty())
    }

    /// Calls `f` with the subscriptions of every prefix of `subject`.
    fn visit(&self, subject: &[u8], f: &mut impl FnMut(u32)) {
        if self.nodes.is_empty() {
            return;
        }
        let mut node = 0;
        for &byte in subject {
            match self.child(node, byte) {
                Ok(child) => node = child,
                Err(_) => return,
            }
            self.nodes[node as usize].slots.iter().copied().for_each(&mut *f);
        }
    }

    /// The child of `node` along `byte`, or where it would be inserted.
    fn child(&self, node: u32, byte: u8) -> Result<u32, usize> {
        let children = &self.nodes[node as usize].children;
        children
            .binary_search_by_key(&byte, |(b, _)| *b)
            .map(|index| children[index].1)
    }

    fn new_node(&mut self) -> u32 {
        match self.free.pop() {
            Some(node) => node,
            None => {
                self.nodes.push(TrieNode::default());
                u32::try_from(self.nodes.len() - 1).expect("fewer than 2^32 trie nodes")
            }
        }
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
    fn trie_nodes_are_pruned_and_reused() {
        let mut table = RoutingTable::new();
        for round in 0..3 {
            for i in 0..50 {
                table
                    .insert(i, &filter(json!({"subjectBeginsWith": format!("p/{round}/{i}")})))
                    .unwrap();
            }
            assert_eq!(route(&table, &event("t", &format!("p/{round}/7x"), json!({}))), [7]);
            for i in 0..50 {
                table.remove(&i);
            }
            assert!(table.any_type.folded_prefix.is_empty());
        }
        let trie = &table.any_type.folded_prefix;
        assert_eq!(trie.nodes.len(), trie.free.len() + 1, "every node but the root is free");
        assert!(trie.nodes.len() < 250, "nodes are reused: {}", trie.nodes.len());
    }
}
