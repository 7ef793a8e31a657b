//! offsite engine
