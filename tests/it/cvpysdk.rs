//! Commvault's Python SDK (`cvpysdk`, the client operators' scripts already use) logs in, reads
//! its sessions and logs out. The SDK is installed from PyPI into `target/cvpysdk-venv` the
//! first time (pinned version); without Python or PyPI the test fails, it never skips.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

use crate::both_backends;
use crate::harness::{spawn_app, Backend, ADMIN_PASSWORD};

/// The SDK version the test was written against.
const CVPYSDK: &str = "cvpysdk==11.44";

both_backends!(cvpysdk_logs_in_reads_its_sessions_and_logs_out);

fn venv_python() -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let venv = root.join("target").join("cvpysdk-venv");
    let python = venv.join("bin").join("python");
    let marker = venv.join(".installed");
    if !marker.exists() {
        let status = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 is needed for the cvpysdk test");
        assert!(status.success(), "python3 -m venv failed");
        let status = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                CVPYSDK,
            ])
            .status()
            .expect("pip");
        assert!(status.success(), "pip install {CVPYSDK} failed");
        std::fs::write(&marker, CVPYSDK).expect("write marker");
    }
    python
}

async fn cvpysdk_logs_in_reads_its_sessions_and_logs_out(backend: Backend) {
    let python = tokio::task::spawn_blocking(venv_python).await.unwrap();
    let app = spawn_app(backend).await;
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/cvpysdk/login_sessions_logout.py");
    let output = tokio::process::Command::new(python)
        .arg(script)
        .env(
            "RADACCTD_URL",
            format!("http://{}/webconsole/api", app.http),
        )
        .env("RADACCTD_USER", "admin")
        .env("RADACCTD_PASSWORD", ADMIN_PASSWORD)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "cvpysdk failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("cvpysdk: login, sessions and logout OK"),
        "{stdout}"
    );
    // The SDK's Logout really ended the session.
    let admin = app
        .store()
        .user_by_login("master.domain", "admin")
        .await
        .unwrap()
        .unwrap();
    let open = app
        .store()
        .console_sessions(admin.id, chrono::Utc::now().timestamp(), 0, true)
        .await
        .unwrap();
    assert!(open.is_empty(), "{open:?}");
    app.stop().await;
}
