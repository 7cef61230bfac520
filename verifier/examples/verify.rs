//! Verifies one access token from the command line:
//!
//! ```text
//! cargo run -p token-verifier --example verify -- --issuer URL --audience AUD [--scope S] TOKEN
//! ```
//!
//! Prints the verified claims as JSON and exits 0, or prints why the token is refused and
//! exits 1 (2 for a usage error).

use std::process::ExitCode;

use token_verifier::Verifier;

const USAGE: &str = "usage: verify --issuer URL --audience AUD [--scope S] TOKEN";

struct Args {
    issuer: String,
    audience: String,
    scope: Option<String>,
    token: String,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let (mut issuer, mut audience, mut scope, mut token) = (None, None, None, None);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--issuer" => issuer = Some(value("--issuer")?),
            "--audience" => audience = Some(value("--audience")?),
            "--scope" => scope = Some(value("--scope")?),
            "-h" | "--help" => return Err(USAGE.into()),
            flag if flag.starts_with("--") => return Err(format!("unknown flag {flag}")),
            _ if token.is_none() => token = Some(arg),
            _ => return Err("more than one token".into()),
        }
    }
    Ok(Args {
        issuer: issuer.ok_or("--issuer is required")?,
        audience: audience.ok_or("--audience is required")?,
        scope,
        token: token.ok_or("TOKEN is required")?,
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(why) => {
            eprintln!("{why}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let verified = async {
        let verifier = Verifier::discover(&args.issuer, &args.audience).await?;
        let token = verifier.verify(&args.token).await?;
        if let Some(scope) = &args.scope {
            token.require_scope(scope)?;
        }
        Ok::<_, token_verifier::Error>(token)
    };
    match verified.await {
        Ok(token) => {
            let json = serde_json::to_string_pretty(&token).expect("claims serialize");
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("refused: {e}");
            ExitCode::FAILURE
        }
    }
}
