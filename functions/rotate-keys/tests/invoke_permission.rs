//! The template lets Secrets Manager invoke the rotation function for the signing-key secret
//! only: the invoke permission names that secret in `SourceArn`, so no other secret's rotation
//! (in this account or any other) can call the function.

/// The properties of one resource of `template.yaml`: the lines indented under its name.
fn resource_block<'a>(template: &'a str, name: &str) -> Vec<&'a str> {
    let header = format!("  {name}:");
    let mut lines = template.lines().skip_while(|l| l.trim_end() != header);
    assert!(
        lines.next().is_some(),
        "template.yaml has no resource {name}"
    );
    lines
        .take_while(|l| l.trim().is_empty() || l.starts_with("    "))
        .filter(|l| !l.trim().is_empty())
        .collect()
}

#[test]
fn the_invoke_permission_names_the_signing_key_secret() {
    let template = include_str!("../../../template.yaml");
    let block = resource_block(template, "RotateKeysInvokePermission");
    let props: Vec<&str> = block.iter().map(|l| l.trim()).collect();
    assert!(
        props.contains(&"Principal: secretsmanager.amazonaws.com"),
        "{props:#?}"
    );
    assert!(
        props.contains(&"SourceArn: !Ref SigningKeySecret"),
        "the permission must name the key secret: {props:#?}"
    );
}
