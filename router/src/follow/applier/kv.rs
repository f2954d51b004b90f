//! Conditional writes on retained keys (`when` / `watch` / `will`), parked writes and their
//! wakes, wills and testaments (see the module above).

use fox_wamp_proto::Value;

use super::{
    owner_of, Action, Applier, Ask, Keys, Parked, RealmKv, Refused, Testament, TestamentKey, Will,
    PARKED_PER_KEY_MAX,
};
use crate::engine::record::{self, Conditional, Owner};
use crate::message::{MessageProperties, Publication, PublishOptions, SessionId};
use crate::realm::sync::fits;
use crate::topic::Topic;

impl Applier {
    pub(super) fn resolve(
        &self,
        kv: &Conditional,
        outcome: Result<u64, Refused>,
        out: &mut Vec<Action>,
    ) {
        if self.mine(&kv.owner) {
            out.push(Action::Resolve {
                token: kv.token,
                outcome,
            });
        }
    }

    /// A parked write's wake (`parked`, ordered as record `id`): applied if it is still
    /// the first parked write on its key whose condition holds.
    pub(super) fn wake<K: Keys>(
        &mut self,
        name: &str,
        keys: &K,
        (parked, id): (u64, u64),
        (publication, options): (Publication, PublishOptions),
        now_ms: u64,
        out: &mut Vec<Action>,
    ) {
        let topic = publication.topic.clone();
        let value = keys.value(&topic);
        let first = self.first_eligible(name, &topic, &value);
        if first == Some(parked) {
            if let Some(woken) = self.unpark(name, &topic, parked) {
                if self.write(name, keys, publication, &options, &woken.kv) {
                    self.ask_wills(now_ms, out);
                }
                self.resolve(&woken.kv, Ok(id), out);
            }
        }
        self.check_wakes(name, &topic, keys, now_ms, out);
    }

    /// A dead session's will, written to its key unless the key moved on meanwhile.
    pub(super) fn apply_will<K: Keys>(
        &mut self,
        name: &str,
        publication: Publication,
        owner: Owner,
        realm: &impl Fn(&str) -> Option<K>,
        now_ms: u64,
        out: &mut Vec<Action>,
    ) {
        let topic = publication.topic.clone();
        self.asked
            .remove(&Ask::Will(name.to_owned(), topic.clone()));
        let Some(keys) = realm(name) else {
            return;
        };
        let st = self.state(name);
        let held = st
            .wills
            .get(&topic)
            .is_some_and(|w| w.owner == owner && w.dead);
        if held {
            st.wills.remove(&topic);
            let options = PublishOptions {
                retain: true,
                ..PublishOptions::default()
            };
            keys.deliver(publication, None, &options);
            self.check_wakes(name, &topic, &keys, now_ms, out);
        }
    }

    /// A session's testament, held until the session ends (a testament of a session
    /// already gone is to be published at once).
    pub(super) fn keep_testament(
        &mut self,
        name: &str,
        key: TestamentKey,
        (publication, options): (Publication, PublishOptions),
    ) {
        let dead = self.gone(&owner_of(&key));
        self.dying |= dead;
        let testament = Testament {
            publication,
            options,
            dead,
        };
        self.state(name).testaments.insert(key, testament);
    }

    /// A testament published (once: only if it is still held).
    pub(super) fn fire_testament<K: Keys>(
        &mut self,
        name: &str,
        key: TestamentKey,
        (publication, options): (Publication, PublishOptions),
        realm: &impl Fn(&str) -> Option<K>,
        now_ms: u64,
        out: &mut Vec<Action>,
    ) {
        self.asked.remove(&Ask::Testament(name.to_owned(), key));
        let held = self.state(name).testaments.remove(&key).is_some();
        if let (true, Some(keys)) = (held, realm(name)) {
            let publisher = owner_of(&key).session;
            self.deliver(name, &keys, publication, publisher, &options, now_ms, out);
        }
    }

    /// Ends, in every realm, the sessions `gone` selects (abnormally), and asks for the
    /// wakes their dropped parked writes allow.
    pub(super) fn end_everywhere<K: Keys>(
        &mut self,
        gone: impl Fn(&Owner) -> bool,
        realm: &impl Fn(&str) -> Option<K>,
        now_ms: u64,
        out: &mut Vec<Action>,
    ) {
        let names: Vec<String> = self.realms.keys().cloned().collect();
        for name in names {
            let touched = self.end(&name, &gone, true, out);
            if let Some(keys) = realm(&name) {
                for topic in touched {
                    self.check_wakes(&name, &topic, &keys, now_ms, out);
                }
            }
        }
    }

    /// Delivers a plain (unconditional) publication; a retained one cancels its key's
    /// will and may wake the writes parked on the key.
    #[allow(clippy::too_many_arguments)] // the applier's context, as check_wakes takes it
    pub(super) fn deliver<K: Keys>(
        &mut self,
        name: &str,
        keys: &K,
        publication: Publication,
        publisher: SessionId,
        options: &PublishOptions,
        now_ms: u64,
        out: &mut Vec<Action>,
    ) {
        let topic = publication.topic.clone();
        keys.deliver(publication, Some(publisher), options);
        if options.retain {
            self.state(name).wills.remove(&topic);
            self.check_wakes(name, &topic, keys, now_ms, out);
        }
    }

    pub(super) fn state(&mut self, realm: &str) -> &mut RealmKv {
        self.realms.entry(realm.to_owned()).or_default()
    }

    pub(super) fn conditional<K: Keys>(
        &mut self,
        name: &str,
        keys: &K,
        write: Parked,
        now_ms: u64,
        out: &mut Vec<Action>,
    ) {
        if self.gone(&write.kv.owner) {
            // Its entry's lease expired (or the entry restarted) before it was ordered: the
            // fencing epoch refuses it.
            self.resolve(&write.kv, Err(Refused::NotAccepted), out);
            return;
        }
        let topic = write.publication.topic.clone();
        let value = keys.value(&topic);
        let holds = write.kv.write.when.as_ref().is_none_or(|w| fits(w, &value));
        // A parked write whose condition holds is waiting for its wake: the key is its.
        let reserved = self.first_eligible(name, &topic, &value).is_some();
        if holds && !reserved {
            let Parked {
                id,
                publication,
                options,
                kv,
            } = write;
            if self.write(name, keys, publication, &options, &kv) {
                self.ask_wills(now_ms, out);
            }
            self.resolve(&kv, Ok(id), out);
            self.check_wakes(name, &topic, keys, now_ms, out);
            return;
        }
        let queue = self.state(name).parked.entry(topic.clone()).or_default();
        if write.kv.write.watch && queue.len() < PARKED_PER_KEY_MAX {
            queue.push_back(write);
            self.check_wakes(name, &topic, keys, now_ms, out);
        } else {
            if queue.is_empty() {
                self.state(name).parked.remove(&topic);
            }
            self.resolve(&write.kv, Err(Refused::NotAccepted), out);
        }
    }

    /// Applies a conditional write: the retained value and the key's will. Returns whether
    /// the writer is already gone (its will is then to be written at once).
    pub(super) fn write<K: Keys>(
        &mut self,
        name: &str,
        keys: &K,
        mut publication: Publication,
        options: &PublishOptions,
        kv: &Conditional,
    ) -> bool {
        let topic = publication.topic.clone();
        let dead = self.gone(&kv.owner);
        self.dying |= dead;
        let st = self.state(name);
        match &kv.write.will {
            Some(will) => {
                let will = Will {
                    owner: kv.owner,
                    payload: will.clone(),
                    dead,
                };
                st.wills.insert(topic, will);
            }
            None => {
                st.wills.remove(&topic);
            }
        }
        let mut options = options.clone();
        options.retain = true;
        publication.retain = true;
        keys.deliver(publication, Some(kv.owner.session), &options);
        dead
    }

    /// The ID of the first parked write on `topic` whose condition `value` satisfies.
    pub(super) fn first_eligible(&self, name: &str, topic: &Topic, value: &Value) -> Option<u64> {
        let queue = self.realms.get(name)?.parked.get(topic)?;
        queue
            .iter()
            .find(|p| p.kv.write.when.as_ref().is_none_or(|w| fits(w, value)))
            .map(|p| p.id)
    }

    pub(super) fn unpark(&mut self, name: &str, topic: &Topic, id: u64) -> Option<Parked> {
        let st = self.realms.get_mut(name)?;
        let queue = st.parked.get_mut(topic)?;
        let at = queue.iter().position(|p| p.id == id)?;
        let parked = queue.remove(at);
        if queue.is_empty() {
            st.parked.remove(topic);
        }
        parked
    }

    /// If the first parked write on `topic` that may go now is this entry's, asks the log
    /// for its wake (once).
    pub(super) fn check_wakes<K: Keys>(
        &mut self,
        name: &str,
        topic: &Topic,
        keys: &K,
        now_ms: u64,
        out: &mut Vec<Action>,
    ) {
        let value = keys.value(topic);
        let Some(id) = self.first_eligible(name, topic, &value) else {
            return;
        };
        let Some(parked) = self
            .realms
            .get(name)
            .and_then(|st| st.parked.get(topic))
            .and_then(|q| q.iter().find(|p| p.id == id))
        else {
            return;
        };
        if !self.mine(&parked.kv.owner) || self.asked.contains_key(&Ask::Wake(id)) {
            return;
        }
        let record = record::encode_wake(
            name,
            &parked.publication,
            &parked.options,
            parked.id,
            &parked.kv,
        );
        out.push(Action::Submit {
            publisher: parked.kv.owner.session,
            record,
        });
        self.asked.insert(Ask::Wake(id), now_ms);
    }

    /// Ends the sessions `gone` selects: drops their parked writes; fires (`abnormal`) or
    /// forgets their wills. Returns the keys whose parked writes changed.
    pub(super) fn end(
        &mut self,
        name: &str,
        gone: impl Fn(&Owner) -> bool,
        abnormal: bool,
        out: &mut Vec<Action>,
    ) -> Vec<Topic> {
        let mut dropped = Vec::new();
        let mut touched = Vec::new();
        let Some(st) = self.realms.get_mut(name) else {
            return touched;
        };
        for (topic, queue) in &mut st.parked {
            let before = queue.len();
            queue.retain_mut(|p| {
                if gone(&p.kv.owner) {
                    dropped.push(p.kv.clone());
                    false
                } else {
                    true
                }
            });
            if queue.len() != before {
                touched.push(topic.clone());
            }
        }
        st.parked.retain(|_, q| !q.is_empty());
        // A testament is published however its session ends (GOODBYE or not).
        let mut dying = false;
        for (key, testament) in &mut st.testaments {
            if gone(&owner_of(key)) {
                testament.dead = true;
                dying = true;
            }
        }
        if abnormal {
            for will in st.wills.values_mut().filter(|w| gone(&w.owner)) {
                will.dead = true;
                dying = true;
            }
        } else {
            // A will already to be written (its lease expired) stays so: a later goodbye
            // of the fenced session must not keep its key held.
            st.wills.retain(|_, w| w.dead || !gone(&w.owner));
        }
        self.dying |= dying;
        for kv in dropped {
            self.resolve(&kv, Err(Refused::SessionEnded), out);
        }
        touched
    }

    /// Asks the log to write the wills of this entry's dead sessions (once each).
    pub(super) fn ask_wills(&mut self, now_ms: u64, out: &mut Vec<Action>) {
        if !self.dying {
            return;
        }
        // Whether any is dead, asked for or not (its entry's lease may end, or the log may
        // not answer, and this entry write it after all).
        let mut dying = false;
        for (name, st) in &self.realms {
            for (topic, will) in &st.wills {
                dying |= will.dead;
                if !will.dead || !self.writes_will_of(&will.owner) {
                    continue;
                }
                let ask = Ask::Will(name.clone(), topic.clone());
                if self.asked.contains_key(&ask) {
                    continue;
                }
                out.push(Action::Submit {
                    publisher: 0,
                    record: will_record(name, topic, will),
                });
                self.asked.insert(ask, now_ms);
            }
            for (key, testament) in &st.testaments {
                let owner = owner_of(key);
                dying |= testament.dead;
                if !testament.dead || !self.writes_will_of(&owner) {
                    continue;
                }
                let ask = Ask::Testament(name.clone(), *key);
                if self.asked.contains_key(&ask) {
                    continue;
                }
                out.push(Action::Submit {
                    publisher: 0,
                    record: record::encode_testament(
                        name,
                        &testament.publication,
                        &testament.options,
                        (&owner, key.3),
                        true,
                    ),
                });
                self.asked.insert(ask, now_ms);
            }
        }
        self.dying = dying;
    }
}

/// The record that writes `will` to key `topic` of `realm` (and names whose it is).
pub(super) fn will_record(realm: &str, topic: &Topic, will: &Will) -> Vec<u8> {
    let publication = Publication {
        id: 0,
        topic: topic.clone(),
        payload: will.payload.clone(),
        publisher: 0,
        disclosed: None,
        qos: 0,
        retain: true,
        properties: MessageProperties::default(),
    };
    record::encode_will(realm, &publication, &will.owner)
}
