//! `minicluster render`: validate a MiniCluster and write what its brokers need.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use minicluster_core::spec::{self, LoadedCluster, MAX_INPUT_BYTES};
use minicluster_core::{ClusterDescription, CurveCert, DescribeOptions, Templates, describe};
use minicluster_operator::build::BuildOptions;

use crate::cli::RenderArgs;

/// The MiniCluster rendered when no file is given.
const EMBEDDED_DEFAULT: &str = include_str!("../../examples/hello-world.yaml");

/// The files of one MiniCluster, in the order they are shown.
struct Rendered {
    name: String,
    files: Vec<(&'static str, String)>,
}

pub fn run(args: &RenderArgs) -> anyhow::Result<()> {
    let loaded = match args.file.as_deref() {
        None => spec::load_bytes("<built-in hello-world>", EMBEDDED_DEFAULT.as_bytes())?,
        Some(p) if p == Path::new("-") => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .take(MAX_INPUT_BYTES as u64 + 1)
                .read_to_end(&mut bytes)
                .context("reading standard input")?;
            spec::load_bytes("<stdin>", &bytes)?
        }
        Some(p) => spec::load_file(p)?,
    };
    let source = args
        .file
        .as_ref()
        .map_or("<built-in hello-world>".to_string(), |p| {
            p.display().to_string()
        });
    for note in &loaded.skipped {
        tracing::info!("{source}: skipping {note}");
    }
    report_unknown_fields(&source, &loaded.clusters, args.strict)?;

    let templates = match &args.templates {
        Some(dir) => Templates::with_overrides(dir)?,
        None => Templates::embedded(),
    };
    let opts = DescribeOptions {
        namespace: args.namespace.clone(),
        cluster_domain: args.cluster_domain.clone(),
        loopback_base_port: args.loopback_port,
        ..DescribeOptions::default()
    };
    let build_opts = args.runner.build_options(&args.cluster_domain);
    let mut rendered = Vec::new();
    for lc in &loaded.clusters {
        rendered.push(render_one(
            lc,
            &opts,
            &templates,
            args.with_cert,
            &build_opts,
        )?);
    }
    match &args.out {
        Some(dir) => write_all(dir, &rendered),
        None => {
            print_all(&rendered);
            Ok(())
        }
    }
}

fn report_unknown_fields(
    source: &str,
    clusters: &[LoadedCluster],
    strict: bool,
) -> anyhow::Result<()> {
    let unknown: Vec<&String> = clusters.iter().flat_map(|c| &c.unknown_fields).collect();
    if unknown.is_empty() {
        return Ok(());
    }
    let list = unknown
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    if strict {
        bail!(
            "{source}: fields the MiniCluster schema does not have: {list} (remove them, or drop --strict to ignore them)"
        );
    }
    for f in unknown {
        eprintln!(
            "warning: {source}: {f} is not a MiniCluster field and is ignored (--strict makes this an error)"
        );
    }
    Ok(())
}

fn render_one(
    lc: &LoadedCluster,
    opts: &DescribeOptions,
    templates: &Templates,
    with_cert: bool,
    build_opts: &BuildOptions,
) -> anyhow::Result<Rendered> {
    let mc = &lc.cluster;
    let name = mc.metadata.name.clone().unwrap_or_default();
    let description: ClusterDescription =
        describe(mc, opts).with_context(|| format!("MiniCluster {name:?} is not valid"))?;
    let mut files = vec![
        ("description.json", description.to_json() + "\n"),
        ("broker.toml", templates.broker_config(&description)?),
    ];
    if with_cert {
        files.push(("curve.cert", CurveCert::for_minicluster(mc)?.to_text()));
    }
    files.push((
        "objects.yaml",
        objects_yaml(
            mc,
            opts,
            with_cert
                .then(|| files.last().map(|f| f.1.clone()))
                .flatten(),
            build_opts,
        )?,
    ));
    Ok(Rendered { name, files })
}

/// Every Kubernetes object the operator would create, as multi-document YAML. The Secret is
/// included only with the certificate the user asked for (`--with-cert`).
fn objects_yaml(
    mc: &minicluster_core::MiniCluster,
    opts: &DescribeOptions,
    cert: Option<String>,
    build_opts: &BuildOptions,
) -> anyhow::Result<String> {
    let mut mc = mc.clone();
    if mc.metadata.namespace.is_none() {
        mc.metadata.namespace = Some(opts.namespace.clone());
    }
    let children =
        minicluster_operator::build::build(&mc, cert.as_deref().unwrap_or(""), build_opts)?;
    let mut out = String::new();
    if cert.is_none() {
        out.push_str(&format!(
            "# Secret {}: the operator generates the CURVE certificate (render --with-cert includes one here)\n",
            children.secret.metadata.name.as_deref().unwrap_or_default()
        ));
    }
    for (i, obj) in children.objects().iter().enumerate() {
        if i == 0 && cert.is_none() {
            continue;
        }
        out.push_str("---\n");
        out.push_str(&serde_norway::to_string(obj)?);
    }
    Ok(out)
}

fn print_all(rendered: &[Rendered]) {
    for r in rendered {
        for (file, text) in &r.files {
            println!("==> {}/{file} <==", r.name);
            print!("{text}");
            if !text.ends_with('\n') {
                println!();
            }
        }
    }
}

fn write_all(dir: &Path, rendered: &[Rendered]) -> anyhow::Result<()> {
    for r in rendered {
        // Several MiniClusters in one file each get a directory of their own.
        let target: PathBuf = if rendered.len() > 1 {
            dir.join(&r.name)
        } else {
            dir.to_path_buf()
        };
        std::fs::create_dir_all(&target)
            .with_context(|| format!("creating {}", target.display()))?;
        for (file, text) in &r.files {
            let path = target.join(file);
            if *file == "curve.cert" {
                // Owner-only and atomic: Flux refuses a certificate others can read.
                CurveCert::parse(text)?.write(&path)?;
            } else {
                std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(())
}
