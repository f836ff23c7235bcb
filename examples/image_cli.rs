//! A stand-alone front end for the image commands, used by `scripts/bench-image.sh` until the
//! main CLI dispatches them: `image_cli image|restore|clone|verify|info ...`.

use clap::{Parser, Subcommand};
use salvor::cli::image::{
    run_clone, run_image, run_info, run_restore, run_verify, CloneArgs, ImageArgs, InfoArgs,
    RestoreArgs, VerifyArgs,
};
use salvor::progress::Control;

#[derive(Parser)]
#[command(name = "salvor")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    Image(ImageArgs),
    Restore(RestoreArgs),
    Clone(CloneArgs),
    Verify(VerifyArgs),
    Info(InfoArgs),
}

fn main() {
    let cli = Cli::parse();
    let control = Control::new();
    let r = match &cli.cmd {
        Cmd::Image(a) => run_image(a, &control),
        Cmd::Restore(a) => run_restore(a, &control),
        Cmd::Clone(a) => run_clone(a, &control),
        Cmd::Verify(a) => run_verify(a, &control),
        Cmd::Info(a) => run_info(a, &control),
    };
    match r {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("salvor: {e}");
            std::process::exit(e.exit_code());
        }
    }
}
