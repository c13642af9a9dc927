//! The control plane's commands: `serve`, and `pools`, `queues`, `submit`, `jobs`, `job`,
//! `cancel`, `logs --job` as clients of its HTTP API.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};
use minicluster_pools::queue::{Fairness, QueueConfig};
use minicluster_pools::store::{Job, Launch, NewJob};
use minicluster_pools::tags::parse_tags;
use minicluster_pools::{LauncherType, Pool, pool, sync};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::cli::{
    JobArgs, JobsArgs, PoolFields, PoolsCommand, QueuesCommand, ServeArgs, SubmitArgs,
};

pub fn serve(a: &ServeArgs) -> anyhow::Result<i32> {
    let state_dir = a
        .state_dir
        .clone()
        .unwrap_or_else(|| minicluster_launcher::state::root().join("control"));
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("creating the state directory {}", state_dir.display()))?;
    let database = a
        .database
        .clone()
        .unwrap_or_else(|| state_dir.join("control.db").display().to_string());
    let entrypoint = super::launch::find_entrypoint(a.entrypoint.clone())?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(minicluster_pools::server::serve(
        minicluster_pools::server::ServeOptions {
            listen: a.listen,
            database,
            state_dir,
            entrypoint,
            flux: a.flux.clone(),
            tick: Duration::from_millis(500),
            kubernetes_build: a.runner.build_options("cluster.local"),
        },
    ))?;
    Ok(0)
}

/// A small client of the control plane: JSON in and out, its `{"error"}` as our error.
struct Client {
    base: String,
    http: reqwest::blocking::Client,
}

impl Client {
    fn new(server: &str) -> anyhow::Result<Client> {
        Ok(Client {
            base: server.trim_end_matches('/').to_string(),
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
        })
    }

    fn send(
        &self,
        req: reqwest::blocking::RequestBuilder,
    ) -> anyhow::Result<reqwest::blocking::Response> {
        let resp = req.send().map_err(|e| {
            anyhow::anyhow!(
                "cannot reach the control plane at {}: {} (fix: start it with `minicluster serve`, or point --server / MINICLUSTER_SERVER at it)",
                self.base,
                std::error::Error::source(&e).map_or_else(|| e.to_string(), |s| s.to_string())
            )
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let text = resp.text().unwrap_or_default();
        let msg = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(String::from))
            .unwrap_or(text);
        bail!("{msg} (HTTP {})", status.as_u16())
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        Ok(self
            .send(self.http.get(format!("{}{path}", self.base)))?
            .json()?)
    }

    fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> anyhow::Result<T> {
        Ok(self
            .send(self.http.post(format!("{}{path}", self.base)).json(body))?
            .json()?)
    }

    fn put<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> anyhow::Result<T> {
        Ok(self
            .send(self.http.put(format!("{}{path}", self.base)).json(body))?
            .json()?)
    }
}

/// `90s`, `5m`, `1h`, or plain seconds.
fn parse_duration(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .with_context(|| format!("--idle-timeout {s:?}: not a duration (fix: e.g. 90s, 5m, 1h)"))?;
    Ok(n * match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => bail!("--idle-timeout {s:?}: unknown unit {unit:?} (fix: s, m or h)"),
    })
}

fn apply_fields(p: &mut Pool, f: &PoolFields) -> anyhow::Result<()> {
    p.set.extend(pool::parse_sets(&f.set)?);
    p.provides
        .extend(parse_tags(&f.provides).context("--provides")?);
    p.accepts
        .extend(parse_tags(&f.accepts).context("--accepts")?);
    if let Some(t) = &f.template {
        p.template = Some(
            std::fs::read_to_string(t)
                .with_context(|| format!("reading the template {}", t.display()))?,
        );
    }
    if let Some(n) = f.max_launches {
        p.max_launches = n;
    }
    if let Some(d) = &f.idle_timeout {
        p.idle_timeout = parse_duration(d)?;
    }
    Ok(())
}

fn json_out(v: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn tags_text(t: &minicluster_pools::Tags) -> String {
    if t.is_empty() {
        return "-".into();
    }
    t.iter()
        .map(|(k, v)| format!("{k}:{v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn print_pools(pools: &[Pool]) {
    println!(
        "{:<20} {:<11} {:<8} {:>8}  {:<28} ACCEPTS",
        "NAME", "TYPE", "STATE", "LAUNCHES", "PROVIDES"
    );
    for p in pools {
        println!(
            "{:<20} {:<11} {:<8} {:>8}  {:<28} {}",
            p.name,
            p.launcher,
            if p.enabled { "enabled" } else { "disabled" },
            p.max_launches,
            tags_text(&p.provides),
            tags_text(&p.accepts)
        );
    }
}

fn print_launches(launches: &[Launch]) {
    println!(
        "{:<24} {:>6} {:<10} {:>9}  TIMELINE",
        "LAUNCH", "JOB", "STATE", "SECONDS"
    );
    for l in launches {
        let first = l.events.first().map_or(0, |e| e.at);
        let last = l.events.last().map_or(0, |e| e.at);
        let steps: Vec<String> = l
            .events
            .iter()
            .map(|e| match &e.detail {
                Some(d) if e.state.is_final() || e.state.as_str() == "failed" => {
                    format!("{} ({d})", e.state)
                }
                _ => e.state.to_string(),
            })
            .collect();
        println!(
            "{:<24} {:>6} {:<10} {:>9.1}  {}",
            l.name,
            l.job,
            l.state,
            (last.saturating_sub(first)) as f64 / 1000.0,
            steps.join(" → ")
        );
    }
}

pub fn pools(server: &str, cmd: &PoolsCommand) -> anyhow::Result<i32> {
    let c = Client::new(server)?;
    match cmd {
        PoolsCommand::Create {
            name,
            launcher,
            fields,
        } => {
            let mut p = Pool::new(name.clone(), launcher.parse::<LauncherType>()?);
            apply_fields(&mut p, fields)?;
            pool::validate(&p)?;
            let p: Pool = c.post("/v1/pools", &p)?;
            eprintln!(
                "created pool {} ({}, max {} launches)",
                p.name, p.launcher, p.max_launches
            );
        }
        PoolsCommand::List { json } => {
            let v: Value = c.get("/v1/pools")?;
            let pools: Vec<Pool> = serde_json::from_value(v["pools"].clone())?;
            if *json {
                json_out(&pools)?;
            } else {
                print_pools(&pools);
            }
        }
        PoolsCommand::Get { name } => json_out(&c.get::<Pool>(&format!("/v1/pools/{name}"))?)?,
        PoolsCommand::Update { name, fields } => {
            let mut p: Pool = c.get(&format!("/v1/pools/{name}"))?;
            apply_fields(&mut p, fields)?;
            pool::validate(&p)?;
            let _: Pool = c.put(&format!("/v1/pools/{name}"), &p)?;
            eprintln!("updated pool {name}");
        }
        PoolsCommand::Delete { name } => {
            c.send(c.http.delete(format!("{}/v1/pools/{name}", c.base)))?;
            eprintln!("deleted pool {name}");
        }
        PoolsCommand::Disable { name } => {
            let _: Pool = c.post(&format!("/v1/pools/{name}/disable"), &())?;
            eprintln!("disabled pool {name}: no new work; running work finishes");
        }
        PoolsCommand::Enable { name } => {
            let _: Pool = c.post(&format!("/v1/pools/{name}/enable"), &())?;
            eprintln!("enabled pool {name}");
        }
        PoolsCommand::Launches { name, watch, json } => loop {
            let launches: Vec<Launch> = c.get(&format!("/v1/pools/{name}/launches"))?;
            if *json {
                json_out(&launches)?;
            } else {
                if *watch {
                    // Clear the screen and draw the table again.
                    print!("\x1b[2J\x1b[H");
                }
                print_launches(&launches);
            }
            std::io::stdout().flush()?;
            if !*watch {
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
        },
        PoolsCommand::Export { output, only } => {
            let v: Value = c.get("/v1/pools")?;
            let pools: Vec<Pool> = serde_json::from_value(v["pools"].clone())?;
            for o in only {
                if !pools.iter().any(|p| &p.name == o) {
                    bail!("--only {o}: no such pool (fix: `minicluster pools list`)");
                }
            }
            let text = sync::export(&pools, only);
            match output {
                Some(path) => {
                    std::fs::write(path, text)
                        .with_context(|| format!("writing {}", path.display()))?;
                    eprintln!("wrote {}", path.display());
                }
                None => print!("{text}"),
            }
        }
        PoolsCommand::Import {
            file,
            dry_run,
            only,
        } => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            let wanted = sync::parse(&file.display().to_string(), &text)?;
            let v: Value = c.get("/v1/pools")?;
            let current: Vec<Pool> = serde_json::from_value(v["pools"].clone())?;
            let revision = v["revision"].as_u64().unwrap_or(0);
            let changes = sync::plan(&current, &wanted, only)?;
            print!("{}", sync::render(&changes));
            if *dry_run || changes.is_empty() {
                return Ok(0);
            }
            let (upserts, deletes) = sync::split(&changes);
            let _: Value = c.post(
                "/v1/pools/import",
                &serde_json::json!({ "upserts": upserts, "deletes": deletes, "revision": revision }),
            )?;
            eprintln!("applied");
        }
    }
    Ok(0)
}

pub fn queues(server: &str, cmd: &QueuesCommand) -> anyhow::Result<i32> {
    let c = Client::new(server)?;
    match cmd {
        QueuesCommand::Create {
            name,
            pools,
            max_running,
            max_depth,
            priority,
            fairness,
            weights,
        } => {
            let mut q = QueueConfig::new(name.clone());
            q.pools = pools.clone();
            if let Some(n) = max_running {
                q.max_running = *n;
            }
            if let Some(n) = max_depth {
                q.max_depth = *n;
            }
            q.priority = *priority;
            q.fairness = match fairness.as_str() {
                "none" => Fairness::None,
                "users" => Fairness::Users,
                "projects" => Fairness::Projects,
                other => bail!("--fairness {other:?}: not a policy (fix: none, users or projects)"),
            };
            for w in weights {
                let (who, weight) = w.split_once('=').with_context(|| {
                    format!("--weights {w:?}: not NAME=WEIGHT (fix: e.g. alice=2)")
                })?;
                let weight: f64 = weight
                    .parse()
                    .ok()
                    .filter(|x: &f64| x.is_finite() && *x > 0.0)
                    .with_context(|| {
                        format!("--weights {w:?}: the weight is not a positive number")
                    })?;
                q.weights.insert(who.to_string(), weight);
            }
            let q: QueueConfig = c.post("/v1/queues", &q)?;
            eprintln!(
                "created queue {} (max {} running, {} waiting)",
                q.name, q.max_running, q.max_depth
            );
        }
        QueuesCommand::List { json } => {
            let qs: Vec<Value> = c.get("/v1/queues")?;
            if *json {
                json_out(&qs)?;
            } else {
                println!(
                    "{:<16} {:<9} {:>8} {:>8} {:<9} {:>7} {:>7} {:>7}  POOLS",
                    "NAME", "STATE", "RUNNING", "DEPTH", "FAIRNESS", "WAITING", "CLAIMED", "ENDED"
                );
                for q in qs {
                    let n = |s: &str| q["jobs"][s].as_u64().unwrap_or(0);
                    let pools: Vec<&str> = q["pools"]
                        .as_array()
                        .map(|a| a.iter().filter_map(|p| p.as_str()).collect())
                        .unwrap_or_default();
                    println!(
                        "{:<16} {:<9} {:>8} {:>8} {:<9} {:>7} {:>7} {:>7}  {}",
                        q["name"].as_str().unwrap_or(""),
                        q["state"].as_str().unwrap_or(""),
                        q["max_running"].as_u64().unwrap_or(0),
                        q["max_depth"].as_u64().unwrap_or(0),
                        q["fairness"].as_str().unwrap_or(""),
                        n("waiting"),
                        n("claimed"),
                        n("done") + n("failed") + n("cancelled"),
                        if pools.is_empty() {
                            "(all)".to_string()
                        } else {
                            pools.join(",")
                        }
                    );
                }
            }
        }
        QueuesCommand::Pause { name }
        | QueuesCommand::Resume { name }
        | QueuesCommand::Drain { name } => {
            let action = match cmd {
                QueuesCommand::Pause { .. } => "pause",
                QueuesCommand::Resume { .. } => "resume",
                _ => "drain",
            };
            let q: QueueConfig = c.post(&format!("/v1/queues/{name}/{action}"), &())?;
            eprintln!("queue {}: {:?}", q.name, q.state);
        }
    }
    Ok(0)
}

pub fn submit(server: &str, a: &SubmitArgs) -> anyhow::Result<i32> {
    let c = Client::new(server)?;
    let job = NewJob {
        queue: a.queue.clone(),
        user: a
            .user
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "nobody".into()),
        project: a.project.clone(),
        priority: a.priority,
        command: a.command.clone(),
        requires: parse_tags(&a.requires).context("--requires")?,
        size: a.size,
    };
    let j: Job = c.post("/v1/jobs", &job)?;
    if a.json {
        json_out(&j)?;
    } else if !a.wait {
        println!("{}", j.id);
    } else {
        eprintln!("minicluster: job {} queued in {}", j.id, j.spec.queue);
    }
    if !a.wait {
        return Ok(0);
    }
    let end = follow(&c, j.id, true)?;
    Ok(end.exit_code.unwrap_or(1))
}

/// Prints rank 0's output of a job as it grows (when `print`) until the job ends.
fn follow(c: &Client, id: u64, print: bool) -> anyhow::Result<Job> {
    let mut offset = 0u64;
    let mut out = std::io::stdout();
    loop {
        let resp = c.send(
            c.http
                .get(format!("{}/v1/jobs/{id}/logs?offset={offset}", c.base)),
        )?;
        let state = resp
            .headers()
            .get("x-job-state")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let bytes = resp.bytes()?;
        offset += bytes.len() as u64;
        if print {
            out.write_all(&bytes)?;
            out.flush()?;
        }
        let ended = matches!(state.as_str(), "done" | "failed" | "cancelled");
        if ended && bytes.is_empty() {
            let v: Value = c.get(&format!("/v1/jobs/{id}"))?;
            return Ok(serde_json::from_value(v["job"].clone())?);
        }
        if bytes.is_empty() {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

pub fn job_logs(server: &str, id: u64, follow_on: bool) -> anyhow::Result<i32> {
    let c = Client::new(server)?;
    if follow_on {
        follow(&c, id, true)?;
    } else {
        let resp = c.send(c.http.get(format!("{}/v1/jobs/{id}/logs", c.base)))?;
        std::io::stdout().write_all(&resp.bytes()?)?;
    }
    Ok(0)
}

fn print_jobs(jobs: &[Job]) {
    println!(
        "{:>6} {:<12} {:<10} {:<12} {:<16} {:>4}  COMMAND",
        "ID", "QUEUE", "STATE", "USER", "POOL", "EXIT"
    );
    for j in jobs {
        println!(
            "{:>6} {:<12} {:<10} {:<12} {:<16} {:>4}  {}",
            j.id,
            j.spec.queue,
            j.state,
            j.spec.user,
            j.pool.as_deref().unwrap_or("-"),
            j.exit_code.map_or("-".into(), |c| c.to_string()),
            shell_words::join(&j.spec.command)
        );
    }
}

pub fn jobs(server: &str, a: &JobsArgs) -> anyhow::Result<i32> {
    let c = Client::new(server)?;
    let mut q = vec![format!("limit={}", a.limit)];
    for (k, v) in [("queue", &a.queue), ("state", &a.state), ("user", &a.user)] {
        if let Some(v) = v {
            q.push(format!("{k}={v}"));
        }
    }
    let jobs: Vec<Job> = c.get(&format!("/v1/jobs?{}", q.join("&")))?;
    if a.json {
        json_out(&jobs)?;
    } else {
        print_jobs(&jobs);
    }
    Ok(0)
}

pub fn job(server: &str, a: &JobArgs) -> anyhow::Result<i32> {
    let c = Client::new(server)?;
    let v: Value = c.get(&format!("/v1/jobs/{}", a.id))?;
    if a.json {
        return json_out(&v).map(|()| 0);
    }
    let j: Job = serde_json::from_value(v["job"].clone())?;
    print_jobs(std::slice::from_ref(&j));
    if let Some(r) = &j.reason {
        println!("reason: {r}");
    }
    if let Ok(l) = serde_json::from_value::<Launch>(v["launch"].clone()) {
        println!();
        print_launches(std::slice::from_ref(&l));
    }
    Ok(0)
}

pub fn cancel(server: &str, a: &JobArgs) -> anyhow::Result<i32> {
    let c = Client::new(server)?;
    let j: Job = c.post(&format!("/v1/jobs/{}/cancel", a.id), &())?;
    eprintln!(
        "job {}: {}",
        j.id,
        if j.cancel_requested {
            "stopping its MiniCluster"
        } else {
            "cancelled"
        }
    );
    Ok(0)
}
