//! Publishing events through the broker's event service.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::json;

use crate::client::{Client, Request};
use crate::error::Result;

#[derive(Deserialize)]
struct Seq {
    seq: u32,
}

impl Client {
    /// Publish an event and wait until the broker has sequenced it; returns the sequence
    /// number (what `flux event pub --synchronous` does).
    pub async fn event_publish(
        &self,
        topic: &str,
        payload: Option<&serde_json::Value>,
    ) -> Result<u32> {
        let encoded = match payload {
            Some(p) => {
                let mut bytes =
                    serde_json::to_vec(p).map_err(|e| crate::Error::Encode(e.to_string()))?;
                bytes.push(0);
                Some(BASE64.encode(bytes))
            }
            None => None,
        };
        let mut body = json!({ "topic": topic, "flags": 0 });
        if let Some(e) = encoded {
            body["payload"] = json!(e);
        }
        let req = Request::new("event.publish").rank(0).json(&body)?;
        Ok(self.rpc(req).await?.json::<Seq>()?.seq)
    }
}
