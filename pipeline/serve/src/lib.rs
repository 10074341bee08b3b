//! `distill serve`: an OpenAI-compatible HTTP server over a local candle model (an exported
//! student or the project's own teacher), so the teacher stage can talk to a local model
//! exactly as it talks to OpenAI, vLLM or llama.cpp.
//!
//! Endpoints: `GET /v1/models`, `GET /v1/models/{id}`, `POST /v1/chat/completions`,
//! `POST /v1/completions` (both with `stream: true` as server-sent events), and `GET /health`.
//! Parameters: `n`, `temperature`, `top_p`, `max_tokens` (`max_completion_tokens`), `stop`,
//! `seed`, `logprobs` / `top_logprobs` (chat) or `logprobs: k` (completions), `stream_options`.
//! Errors are OpenAI's JSON shape with its status codes ([`api_error`]); optional bearer-token
//! auth and a request-rate limit with OpenAI's headers ([`guard`]).
//!
//! Inside: handlers check a request ([`head`], [`protocol`]), render and tokenize it
//! ([`vocab`]), and hand one job per choice to the [`engine`], a thread that batches the jobs
//! arriving together and decodes them with a KV cache, each with its own sampling settings
//! ([`sample`]) and stop strings ([`text`]), streaming tokens back; both endpoints answer in
//! one envelope ([`reply`]). [`cli::ServeArgs`] are the subcommand's flags; `fixture` (feature
//! `testing`) writes tiny random model folders for tests and the benchmark.
//!
//! ```no_run
//! let cfg = distill_serve::ServeConfig { model_dir: "runs/teacher".into(), port: 0, ..Default::default() };
//! let server = distill_serve::start(&cfg)?;
//! println!("{}", server.base_url()); // http://127.0.0.1:PORT/v1
//! server.shutdown()?;
//! # Ok::<(), distill_serve::Error>(())
//! ```

pub mod api_error;
pub mod chat;
pub mod cli;
pub mod completions;
pub mod config;
pub mod engine;
pub mod error;
#[cfg(any(test, feature = "testing"))]
pub mod fixture;
pub mod generate;
pub mod guard;
pub mod head;
pub mod protocol;
pub mod reply;
pub mod sample;
pub mod server;
pub mod text;
pub mod vocab;

pub use cli::ServeArgs;
pub use config::{ServeConfig, Settings};
pub use error::{Error, Result};
pub use server::{serve_forever, start, start_with, ServerHandle};
