//! Flags and values: help for each subcommand, completions, and errors
//! that name the flag instead of panics.

use crate::sinew;

/// Asserts a usage error (exit 2, no panic) whose message has `needles`.
async fn refused(args: &[&str], needles: &[&str]) {
    let (code, out, err) = sinew(args).await;
    assert_eq!(code, 2, "sinew {args:?}: {out}{err}");
    assert!(!err.contains("panicked"), "sinew {args:?}: {err}");
    for needle in needles {
        assert!(
            err.contains(needle),
            "sinew {args:?}: `{needle}` not in {err}"
        );
    }
}

#[tokio::test]
async fn data_hex_with_a_non_ascii_character_is_an_error_naming_the_flag() {
    // It used to slice the text by byte pairs, splitting `é`, and panic.
    refused(
        &[
            "call",
            "greeter",
            "--bootstrap",
            "b.json",
            "--grpc",
            "/a.B/C",
            "--data-hex",
            "aéb",
        ],
        &["--data-hex", "`é` (at 2) is not a hex digit"],
    )
    .await;
    refused(
        &[
            "call",
            "greeter",
            "--bootstrap",
            "b.json",
            "--grpc",
            "/a.B/C",
            "--data-hex",
            "abc",
        ],
        &["--data-hex", "an even number of hex digits"],
    )
    .await;
}

#[tokio::test]
async fn a_wait_too_long_for_the_clock_is_refused_not_a_panic() {
    // It used to overflow `Instant + Duration` and panic.
    let huge = u64::MAX.to_string();
    for command in ["config", "call"] {
        refused(
            &[
                command,
                "reviews",
                "--control-plane",
                "http://127.0.0.1:1",
                "--wait",
                &huge,
            ],
            &["--wait <SECONDS>", "must be from 1 to 86400 seconds"],
        )
        .await;
    }
    refused(
        &[
            "config",
            "reviews",
            "--control-plane",
            "http://127.0.0.1:1",
            "--wait",
            "0",
        ],
        &["--wait <SECONDS>"],
    )
    .await;
}

#[tokio::test]
async fn bad_values_and_misplaced_flags_are_errors_naming_the_flag() {
    let cp = ["--control-plane", "http://127.0.0.1:1"];
    // Requests that could only fail, each the same way: refused up front.
    refused(
        &["call", "a b", cp[0], cp[1]],
        &["<SERVICE>", "not a service name"],
    )
    .await;
    refused(
        &["call", "reviews", cp[0], cp[1], "--path", "x"],
        &["--path", "starts with `/`"],
    )
    .await;
    refused(
        &["call", "reviews", cp[0], cp[1], "--grpc", "a.B/C"],
        &["--grpc"],
    )
    .await;
    refused(
        &["call", "reviews", "--control-plane", "not a url"],
        &["--control-plane <URL>"],
    )
    .await;
    refused(
        &["call", "reviews", cp[0], cp[1], "--count", "0"],
        &["--count <N>", "at least 1"],
    )
    .await;
    refused(
        &[
            "call",
            "reviews",
            cp[0],
            cp[1],
            "--concurrency",
            "100000000",
        ],
        &["--concurrency <C>", "at most 10000"],
    )
    .await;
    refused(
        &["call", "reviews", cp[0], cp[1], "--max-body-bytes", "x"],
        &["--max-body-bytes"],
    )
    .await;
    // Used to be ignored silently.
    refused(
        &["call", "reviews", cp[0], cp[1], "--data-hex", "00"],
        &["--grpc"],
    )
    .await;
    refused(
        &["check", "mesh.yaml", "--count", "3"],
        &["unexpected argument '--count'"],
    )
    .await;
    refused(
        &["call", "reviews", cp[0], cp[1], "--bootstrap", "b.json"],
        &["'--control-plane <URL>' cannot be used with '--bootstrap <FILE>'"],
    )
    .await;
    refused(&["control-plane", "--xds", "nowhere"], &["--xds <ADDR>"]).await;
    refused(
        &["cal"],
        &[
            "unrecognized subcommand 'cal'",
            "a similar subcommand exists: 'call'",
        ],
    )
    .await;
}

#[tokio::test]
async fn help_for_each_subcommand_and_without_one() {
    let (code, out, _) = sinew(&[]).await;
    assert_eq!(code, 0);
    for command in ["call", "config", "control-plane", "check", "completions"] {
        assert!(out.contains(command), "{out}");
    }
    for args in [&["help", "call"][..], &["call", "--help"]] {
        let (code, out, _) = sinew(args).await;
        assert_eq!(code, 0);
        assert!(out.contains("Usage: sinew call"), "{out}");
        assert!(out.contains("--max-body-bytes <BYTES>"), "{out}");
        assert!(out.contains("[default: 4194304]"), "{out}");
    }
    let (code, out, _) = sinew(&["control-plane", "-h"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("--allow-unauthenticated-writes"), "{out}");
    assert!(out.contains("[default: 127.0.0.1:18000]"), "{out}");
}

#[tokio::test]
async fn completions_for_bash_zsh_and_fish() {
    for (shell, marker) in [
        ("bash", "complete -F _sinew"),
        ("zsh", "#compdef sinew"),
        ("fish", "complete -c sinew"),
    ] {
        let (code, out, err) = sinew(&["completions", shell]).await;
        assert_eq!(code, 0, "{err}");
        assert!(out.contains(marker), "{shell}: {out}");
        assert!(out.contains("control-plane"), "{shell}: {out}");
        assert!(out.contains("max-body-bytes"), "{shell}: {out}");
    }
    refused(&["completions", "tcsh"], &["invalid value 'tcsh'", "bash"]).await;
}

#[tokio::test]
async fn a_token_file_that_is_not_a_token_is_refused() {
    let dir = std::env::temp_dir().join(format!("sinew-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // It used to be read whole, whatever its size (a log, /dev/zero), and
    // served as the token.
    let big = dir.join("big");
    std::fs::write(&big, vec![b'x'; 1 << 20]).unwrap();
    let args = |file: &std::path::Path| {
        [
            "control-plane".to_owned(),
            "--xds".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--admin".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--token-file".to_owned(),
            file.to_str().unwrap().to_owned(),
        ]
    };
    let big_args = args(&big);
    let big_args: Vec<&str> = big_args.iter().map(String::as_str).collect();
    refused(&big_args, &["--token-file", "over 4096 bytes"]).await;
    let binary = dir.join("binary");
    std::fs::write(&binary, [0xff, 0xfe]).unwrap();
    let binary_args = args(&binary);
    let binary_args: Vec<&str> = binary_args.iter().map(String::as_str).collect();
    refused(&binary_args, &["--token-file", "not UTF-8 text"]).await;
    let _ = std::fs::remove_dir_all(&dir);
}
