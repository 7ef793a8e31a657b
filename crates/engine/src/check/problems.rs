//! Collecting problems: one per damaged object (later findings about the same object are
//! appended to its message), each with a capped list of affected snapshots and paths.

use std::collections::HashMap;

use offsite_repo::RepoError;

use super::Problem;

/// At most this many affected paths are listed per problem; the rest are counted.
pub const AFFECTS_CAP: usize = 20;

/// Problems found so far.
#[derive(Debug, Default)]
pub(crate) struct Problems {
    list: Vec<Problem>,
    by_object: HashMap<String, usize>,
    more: Vec<u64>,
}

impl Problems {
    /// Record `message` about `object`; returns the problem's position. A second finding about
    /// the same object joins the first (unless it says the same thing).
    pub fn add(&mut self, object: String, message: String) -> usize {
        if let Some(&i) = self.by_object.get(&object) {
            let p = &mut self.list[i];
            if !p.message.split("; ").any(|m| m == message) {
                p.message.push_str("; ");
                p.message.push_str(&message);
            }
            return i;
        }
        let i = self.list.len();
        self.by_object.insert(object.clone(), i);
        self.list.push(Problem { object, message, affects: Vec::new() });
        self.more.push(0);
        i
    }

    /// Name one affected snapshot and path of problem `idx` (the caller passes each once).
    pub fn affect(&mut self, idx: usize, what: String) {
        let p = &mut self.list[idx];
        if p.affects.len() < AFFECTS_CAP {
            if !p.affects.contains(&what) {
                p.affects.push(what);
            }
        } else {
            self.more[idx] += 1;
        }
    }

    /// The problems, with "... and N more" closing a capped list of affected paths.
    pub fn finish(mut self) -> Vec<Problem> {
        for (p, more) in self.list.iter_mut().zip(self.more) {
            if more > 0 {
                p.affects.push(format!("... and {more} more"));
            }
        }
        self.list
    }
}

/// What is wrong, without repeating the object's name (the problem carries it).
pub(crate) fn describe(e: &RepoError) -> String {
    match e {
        RepoError::Corrupt { source, .. } => source.to_string(),
        RepoError::NameMismatch { .. } => "its content does not match its name".to_string(),
        e => e.to_string(),
    }
}
