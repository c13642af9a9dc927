//! A native client of the Flux broker local connector.
