//! The `oxidis` binary: redis-server's command line, then the server.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Arg, ArgAction, Command};
use oxidis::config::{self, Config};

#[global_allocator]
static ALLOCATOR: oxidis::alloc::CountingAllocator = oxidis::alloc::CountingAllocator;

fn cli() -> Command {
    Command::new("oxidis")
        .about("A Redis-compatible in-memory server")
        .override_usage(
            "oxidis [/path/to/redis.conf] [options] [-]\n       \
             oxidis - (read config from stdin)\n       \
             oxidis -v or --version\n       \
             oxidis -h or --help\n\n\
             Examples:\n       \
             oxidis (run the server with default config)\n       \
             oxidis /etc/redis/6379.conf\n       \
             oxidis --port 7777\n       \
             oxidis /etc/myredis.conf --loglevel verbose --save 60 1000",
        )
        .disable_version_flag(true)
        .arg(
            Arg::new("version")
                .short('v')
                .long("version")
                .action(ArgAction::SetTrue)
                .help("Print version"),
        )
        .arg(
            Arg::new("args")
                .num_args(0..)
                .trailing_var_arg(true)
                .allow_hyphen_values(true)
                .value_name("ARGS")
                .help("A config file path, then `--directive value ...` pairs as in redis.conf"),
        )
}

/// Splits redis-server style arguments into a config file and directive lines, as Redis's
/// `main` does: `--name` starts a directive, and the words after it are its arguments, even
/// ones starting with `--` while the directive has none yet (`--port --bla` gives `port
/// "--bla"`). A bare `--save` means `save ""`.
fn directives(args: &[String]) -> (Option<PathBuf>, String) {
    let mut rest = args;
    let mut file = None;
    if let Some(first) = args.first()
        && !first.starts_with("--")
    {
        file = Some(PathBuf::from(first));
        rest = &args[1..];
    }
    let mut text = String::new();
    let mut has_argument = true;
    for (j, arg) in rest.iter().enumerate() {
        let next_is_name = rest.get(j + 1).is_some_and(|a| a.starts_with("--"));
        match arg.strip_prefix("--") {
            Some(name) if has_argument => {
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(name);
                text.push(' ');
                let words = oxidis::protocol::split_args(arg.as_bytes()).map_or(0, |w| w.len());
                has_argument = words != 1;
                if words == 1 && arg.eq_ignore_ascii_case("--save") {
                    if next_is_name || j + 1 == rest.len() {
                        text.push_str("\"\"");
                    }
                    has_argument = next_is_name;
                }
            }
            _ => {
                text.push_str(&oxidis::util::repr(arg.as_bytes()));
                text.push(' ');
                has_argument = true;
            }
        }
    }
    (file, text)
}

fn init_logging(config: &Config) {
    let level = match config.text(config::LOGLEVEL).as_str() {
        "debug" | "verbose" => tracing::Level::DEBUG,
        "warning" => tracing::Level::WARN,
        _ => tracing::Level::INFO,
    };
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false)
        .with_ansi(false);
    let logfile = config.text(config::LOGFILE);
    if logfile.is_empty() {
        builder.init();
    } else {
        match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&logfile)
        {
            Ok(file) => builder.with_writer(std::sync::Mutex::new(file)).init(),
            Err(e) => {
                eprintln!("Can't open the log file: {e}");
                std::process::exit(1);
            }
        }
    }
}

/// The container image's entrypoint: the image links `docker-entrypoint` to this binary, and
/// it acts as the official redis image's script. `oxidis` or `redis-server` as the first
/// argument names the server; a first argument starting with `-` or ending in `.conf` is a
/// server argument; anything else is run as a command in place of the server. Returns the
/// server's command line.
fn docker_entrypoint(mut args: Vec<OsString>) -> Vec<OsString> {
    let program = args.remove(0);
    if args
        .first()
        .is_some_and(|a| a == "oxidis" || a == "redis-server")
    {
        args.remove(0);
    }
    let first = args.first().map(|a| a.to_string_lossy().into_owned());
    let serves = first
        .as_deref()
        .is_none_or(|a| a.starts_with('-') || a.ends_with(".conf"));
    if !serves {
        let error = std::process::Command::new(&args[0]).args(&args[1..]).exec();
        eprintln!("docker-entrypoint: {}: {error}", args[0].to_string_lossy());
        std::process::exit(127);
    }
    args.insert(0, program);
    args
}

fn main() -> ExitCode {
    oxidis::alloc::configure();
    let mut argv: Vec<OsString> = std::env::args_os().collect();
    let in_container = Path::new(&argv[0])
        .file_name()
        .is_some_and(|name| name == "docker-entrypoint");
    if in_container {
        argv = docker_entrypoint(argv);
    }
    let matches = cli().get_matches_from(argv);
    if matches.get_flag("version") {
        println!(
            "Oxidis server v={} redis_version={} bits=64",
            env!("CARGO_PKG_VERSION"),
            oxidis::server::REDIS_VERSION
        );
        return ExitCode::SUCCESS;
    }
    let args: Vec<String> = matches
        .get_many::<String>("args")
        .map(|v| v.cloned().collect())
        .unwrap_or_default();
    let (file, overrides) = directives(&args);
    let mut config = Config::new();
    if in_container {
        // As in the official image: inside a container, protected mode is off unless the
        // configuration turns it on.
        let _ = config.set("protected-mode", &["no".to_string()]);
    }
    let file = file.map(|f| std::fs::canonicalize(&f).unwrap_or(f));
    if let Err(e) = config.load(file.as_deref(), &overrides) {
        eprintln!(
            "\n*** FATAL CONFIG FILE ERROR (Redis {}) ***",
            oxidis::server::REDIS_VERSION
        );
        if let Some((line, text)) = e.line {
            eprintln!("Reading the configuration file, at line {line}");
            eprintln!(">>> '{text}'");
        }
        eprintln!("{}", e.message);
        return ExitCode::from(1);
    }
    config.file = file;
    init_logging(&config);
    // Like Redis, one thread serves every client unless `io-threads` asks for more; then
    // commands run in parallel and the keyspace's shard locks keep them atomic.
    let threads = config.int(oxidis::config::IO_THREADS).max(1) as usize;
    let mut builder = if threads == 1 {
        oxidis::util::counter::commands_run_on_one_thread();
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads);
        builder
    };
    // No tokio time driver: its clock readings at every park are a cost per request at
    // `-P 1`; `oxidis::timer` serves the server's few sleeps.
    let runtime = match builder.enable_io().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("Failed to start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = match runtime.block_on(oxidis::server::run(config)) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{e}");
            1
        }
    };
    // Out at once, as Redis's exit(): dropping the runtime would first wait for threads
    // that may be stuck behind a script that never ends (SHUTDOWN NOSAVE during a busy
    // script), while the listening sockets still took connections.
    std::process::exit(code)
}
