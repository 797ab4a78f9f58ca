//! kith-node: a kith node as a library.
//!
//! - [`store`]: the typed sled store;
//! - [`net`]: the libp2p swarm in its own task, driven through a cloneable client;
//! - [`ingest`]: the one path by which outside records enter the store, and [`keep`]:
//!   what a node keeps of them;
//! - [`core`]: the node's decisions as synchronous code: inputs in, effects out;
//! - [`node`]: the driver of the core, and the logic not yet in it: takes events from
//!   both and answers control requests;
//! - [`api`] and [`control`]: the control API and its Unix socket;
//! - [`media`]: pictures: metadata removed, orientation applied, thumbnails;
//! - [`home`] and [`config`]: the home folder and layered configuration;
//! - [`text`]: network text made safe for terminals and pages;
//! - [`names`] and [`resolve`]: what people are called, and finding people and records
//!   by what a person types;
//! - [`web`]: the local web interface, a client of the node like the control socket.
//!
//! A daemon is `Node::start` plus `control::serve`; tests use `Node::handle` in-process.

pub mod api;
pub mod config;
pub mod control;
pub mod core;
pub mod home;
pub mod ingest;
pub mod keep;
mod limits;
pub mod media;
pub mod names;
pub mod net;
pub mod node;
pub mod resolve;
pub mod store;
pub mod text;
pub mod web;

pub use node::{Node, NodeError, NodeTasks};
