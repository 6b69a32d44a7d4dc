#![no_std]
// The programs live in the `safeguard` binary target (src/main.rs); this
// library exists so that the agent can declare a build dependency on the crate.
