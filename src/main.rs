//! The `gatehouse` command: `run` (default), `check`, `demo`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's malloc: the proxy allocates and frees small
/// buffers on every request from several threads, and glibc's arena locks
/// showed up as futex waits in the profile (see benches/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// gatehouse: an API gateway on Pingora.
#[derive(Parser, Debug)]
#[command(name = "gatehouse", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(clap::Args, Debug, Clone)]
struct RunArgs {
    /// Config file.
    #[arg(short = 'c', long = "conf", default_value = "conf.yaml")]
    conf: PathBuf,
    /// Run in the background.
    #[arg(short = 'd', long)]
    daemon: bool,
    /// Take over the listeners of a running gateway (then send it SIGQUIT).
    #[arg(short = 'u', long)]
    upgrade: bool,
    /// Validate the config and exit (same as `check`).
    #[arg(short = 't', long)]
    test: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the gateway (the default).
    Run(RunArgs),
    /// Validate conf.yaml and every route file; print the route table.
    Check {
        /// Config file.
        #[arg(short = 'c', long = "conf", default_value = "conf.yaml")]
        conf: PathBuf,
    },
    /// Print the `key_sha256` of an API key for a consumer file: of a new
    /// random key (printed once, beside it), or of the key on stdin.
    HashKey {
        /// Read the key from stdin instead of making one.
        #[arg(long)]
        stdin: bool,
    },
    /// Start the gateway with sample apps on :3001-:3005 and print curl commands.
    Demo {
        /// Config file.
        #[arg(short = 'c', long = "conf", default_value = "conf.yaml")]
        conf: PathBuf,
    },
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Check { conf }) => check(&conf),
        Some(Command::Demo { conf }) => gatehouse::demo::run(&conf),
        Some(Command::HashKey { stdin }) => hash_key(stdin),
        Some(Command::Run(args)) => run(&args),
        None => run(&cli.run),
    }
}

/// `gatehouse hash-key`: the key never goes on a command line (shell
/// history, `ps`), so it comes from stdin or is made here.
fn hash_key(stdin: bool) -> ExitCode {
    use gatehouse::auth::api_key::{new_key, sha256_hex};
    if stdin {
        let mut key = String::new();
        if std::io::stdin().read_line(&mut key).is_err() || key.trim().is_empty() {
            eprintln!("gatehouse hash-key --stdin: no key on stdin");
            return ExitCode::FAILURE;
        }
        println!("key_sha256: '{}'", sha256_hex(key.trim()));
    } else {
        let key = new_key();
        println!("key: {key}");
        println!("key_sha256: '{}'", sha256_hex(&key));
    }
    ExitCode::SUCCESS
}

fn check(conf: &std::path::Path) -> ExitCode {
    let metrics = gatehouse::metrics::Metrics::new();
    match gatehouse::config::load(conf, &metrics) {
        Ok(rt) => {
            if rt.routes.is_empty() {
                eprintln!("warning: no route is defined: every request will get 404");
            }
            println!("ok");
            print!("{}", rt.describe());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &RunArgs) -> ExitCode {
    if args.test {
        return check(&args.conf);
    }
    let flags = gatehouse::RunFlags {
        daemon: args.daemon,
        upgrade: args.upgrade,
    };
    match gatehouse::build_server(&args.conf, flags) {
        Ok(server) => server.run_forever(),
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::FAILURE
        }
    }
}
